"""The root's model commands: ``evaluate bundle|photocheck|precision|return-risk`` and
``train release|return-risk``.

Both compose the serving runtime and the training code, so they belong to the root. The
release's options are the fields of :class:`~photograde.release.ReleaseConfig` (one source of
defaults).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from photograde.bundle_settings import set_reference
from photograde.release import ReleaseConfig
from training.cli import needs_train_extra

RELEASE_HELP = {
    "reference_from_test": "write the held-out synthetic set's predicted grades into the "
                           "bundle as its drift reference (off: the service learns one from "
                           "its first grades; a synthetic mix is not a marketplace's)",
    "out": "release directory (data, runs, bundle, evaluation, card)",
    "real": "real front photos: a folder with intact/ and cracked/, or a manifest",
    "seed": "seed of the synthetic training devices (calibration devices: seed + 1)",
    "devices": "synthetic training devices",
    "calib_devices": "synthetic devices for the tabular and fusion models",
    "test_devices": "held-out synthetic devices",
    "test_seed": "seed of the held-out synthetic devices",
    "img_size": "input size of the condition model",
    "epochs": "training epochs of the condition model",
    "freeze_stages": "stem + this many early backbone stages stay frozen",
    "device": "auto, cpu, cuda, cuda:N",
    "ship": "copy the bundle, fp16 weights and card here (e.g. models/photograde-base)",
    "name": "model name recorded in the bundle and the card",
    "synth_size": "longer side of the synthetic photos, px",
    "target_accuracy": "abstention: decided grades reach this accuracy on the held-out set",
    "history_devices": "synthetic marketplace history the return-risk model learns from",
    "history_test_devices": "synthetic marketplace history the return-risk model is scored on",
    "localiser": "a 'train localiser' run: train on whole photos and its crops, and ship a "
                 "bundle that grades the crops (default: whole photos only)",
    "crop_views": "with --localiser: the photos cropped (front, back or front,back)",
    "crop_long_side": "with --localiser: the crops' longer side, px (the model's input size "
                      "keeps a grade cheap)",
    "serve": "with --localiser: what the bundle grades, 'crop' (the localiser ships in it) "
             "or 'whole' (trained on photos and crops alike, served on whole photos)",
    "photocheck_negatives": "photo check: generated photos of each kind without a phone "
                            "(empty scenes, screens, natural photos) it learns from",
    "photocheck_held_out": "photo check: held-out photos of each kind it is measured on",
}


def _release_options(p: argparse.ArgumentParser) -> None:
    for f in dataclasses.fields(ReleaseConfig):
        if f.name == "progress":
            p.add_argument("--quiet", action="store_true", help="no progress bars")
            continue
        if f.type in ("bool", bool):
            p.add_argument(f"--{f.name.replace('_', '-')}", action="store_true",
                           help=RELEASE_HELP[f.name])
            continue
        kind = {"int": int, "float": float}.get(str(f.type), str)
        p.add_argument(f"--{f.name.replace('_', '-')}", type=kind, default=f.default,
                       help=RELEASE_HELP[f.name])


@needs_train_extra
def _release(args: argparse.Namespace) -> int:
    from photograde.release import release

    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(ReleaseConfig)
              if f.name != "progress"}
    record = release(ReleaseConfig(**values, progress=not args.quiet))
    print(f"release: bundle {record['bundle']}, card {Path(record['bundle']) / 'MODEL_CARD.md'}"
          f", {record['minutes']} min")
    return 0


def _evaluate_bundle_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bundle", type=Path, required=True, help="bundle directory")
    p.add_argument("--manifest", type=Path, action="append", required=True,
                   help="evaluation manifest (repeat for several)")
    p.add_argument("--out", type=Path, required=True, help="report folder")
    p.add_argument("--int8", action="store_true", help="the bundle's int8 vision model")
    p.add_argument("--back", type=Path, help="grade each front-only photo with this back "
                   "photo and a passing checklist (the grades a user would see)")
    p.add_argument("--threads", type=int, help="ONNX Runtime threads (default: CPU quota)")
    p.add_argument("--worst", type=int, default=16, help="worst mistakes shown per head")
    p.add_argument("--set-reference", action="store_true", help="grade every device with "
                   "both photos and a checklist as served and write the grade distribution "
                   "into the bundle's manifest as its reference (the service's drift watch)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _evaluate_bundle(args: argparse.Namespace) -> int:
    from photograde.bundle_eval import evaluate_bundle
    from training.vision_eval import summary_line

    result = evaluate_bundle(args.bundle, args.manifest, args.out, int8=args.int8,
                             back=args.back, threads=args.threads, worst=args.worst,
                             progress=not args.quiet, served=args.set_reference)
    for part in ("screen", "shell"):
        if part in result:
            print(summary_line(part, result[part]))
    if result.get("grades"):
        g = result["grades"]
        print(f"grades: n={g['n']} accuracy {g['accuracy']:.3f} macro-F1 {g['macro_f1']:.3f} "
              f"QWK {g['qwk']:.3f}")
    if result.get("user_grades"):
        print("grades a user sees: " + json.dumps(result["user_grades"]["counts"]))
    if args.set_reference:
        where = ", ".join(str(m) for m in args.manifest)
        ref = set_reference(args.bundle, result["served_grades"]["counts"],
                            f"evaluate bundle on {where}")
        print(f"reference grade distribution ({ref['devices']} devices) written to "
              f"{args.bundle / 'manifest.json'}: " + json.dumps(ref["grade_distribution"]))
    print(f"report: {args.out / 'report.md'}")
    return 0


def _evaluate_photocheck_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bundle", type=Path, required=True, help="bundle directory")
    p.add_argument("--folder", type=Path, required=True, help="a folder with sub-folders "
                   "front/, back/, not_a_phone/, blurry/, too_dark/, overexposed/, too_small/, "
                   "compressed/, noisy/")
    p.add_argument("--out", type=Path, help="write the report here (JSON)")
    p.add_argument("--threads", type=int, help="ONNX Runtime threads (default: CPU quota)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _evaluate_photocheck(args: argparse.Namespace) -> int:
    from photograde.check_eval import evaluate_photocheck

    report = evaluate_photocheck(args.bundle, args.folder, args.out, threads=args.threads,
                                 progress=not args.quiet)
    for name, figures in report["folders"].items():
        for key, r in figures.items():
            if key.endswith("_slot"):
                rate = "n/a" if r["rate"] is None else f"{100 * r['rate']:.1f}%"
                print(f"{name:12s} {key:10s} expected {r['expected']:12s} {rate:>7s} of "
                      f"{r['n']} (too_small set apart: {r['too_small_set_apart']}) "
                      f"{json.dumps(r['answers'])}")
    return 0


def _evaluate_robustness_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bundle", type=Path, required=True, help="bundle directory")
    p.add_argument("--manifest", type=Path, action="append", required=True,
                   help="manifest of fronts labelled cracked or not (repeat for several)")
    p.add_argument("--out", type=Path, help="write the report here (JSON)")
    p.add_argument("--int8", action="store_true", help="the bundle's int8 vision model")
    p.add_argument("--only", action="append", metavar="NAME",
                   help="only this degradation (repeat; default: all; jpeg, downscale, blur, "
                   "noise, dark, bright, rotate)")
    p.add_argument("--threads", type=int, help="ONNX Runtime threads (default: CPU quota)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _evaluate_robustness(args: argparse.Namespace) -> int:
    from photograde.robustness_eval import evaluate_robustness, table

    report = evaluate_robustness(args.bundle, args.manifest, args.out, int8=args.int8,
                                 only=args.only, threads=args.threads, progress=not args.quiet)
    print(table(report))
    return 0


def _evaluate_precision_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bundle", type=Path, required=True, help="bundle directory (with an "
                   "int8 model)")
    p.add_argument("--real", type=Path, required=True, help="manifest of labelled real front "
                   "photos (intact and cracked)")
    p.add_argument("--threads", type=int, help="ONNX Runtime threads (default: CPU quota)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _evaluate_precision(args: argparse.Namespace) -> int:
    from photograde.precision_eval import evaluate_precision

    choice = evaluate_precision(args.bundle, args.real, args.threads, not args.quiet)
    print("int8 vs fp32 (points): " + ", ".join(
        f"{k} {v:+.2f}" for k, v in choice.int8_change_points.items()))
    print(f"recorded in {args.bundle / 'manifest.json'}; precision=auto serves "
          f"{choice.precision} ({choice.reason})")
    return 0


def _return_risk_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bundle", type=Path, required=True, help="the bundle whose view of the "
                   "photos the model learns from")
    p.add_argument("--manifest", type=Path, action="append", required=True,
                   help="a history: photos, refurbisher_grade, returned, listed_at, "
                        "refurbisher_id (repeatable; e.g. photograde dataset export)")
    p.add_argument("--out", type=Path, required=True, help="run directory")
    p.add_argument("--test", type=Path, help="a held-out history to score the model on")
    p.add_argument("--install", action="store_true", help="write the model into the bundle")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _history_line(h: dict) -> str:
    """One line of a return-risk model's figures on a history."""
    return (f"{h['manifest']} ({h['held_out_rows']} listings, returned {h['base_rate']:.1%}): "
            f"ROC-AUC {h['roc_auc']}, PR-AUC {h['pr_auc']}, Brier {h['brier']} (base rate "
            f"{h['brier_base_rate']}), ECE {h['calibration']['ece']}")


@needs_train_extra
def _return_risk(args: argparse.Namespace) -> int:
    from photograde.return_risk import train_return_risk

    s = train_return_risk(args.bundle, args.manifest, args.out, test=args.test,
                          install=args.install, seed=args.seed, progress=not args.quiet)
    m = s["metrics"]
    print(f"held-out split ({m['held_out_rows']} rows): ROC-AUC {m['roc_auc']}, PR-AUC "
          f"{m['pr_auc']}, ECE {m['calibration']['ece']} (facts only: ROC-AUC "
          f"{m['facts_only']['roc_auc']})")
    if "held_out_history" in m:
        print("held-out history " + _history_line(m["held_out_history"]))
    if args.install:
        print(f"installed into {args.bundle} (bundle {s['bundle_version']})")
    print(f"model: {args.out / 'tabular.onnx'}, figures: {args.out / 'tabular.json'}")
    return 0


def _evaluate_return_risk_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bundle", type=Path, required=True, help="bundle directory")
    p.add_argument("--manifest", type=Path, required=True, help="a history (photos, "
                   "refurbisher_grade, returned, listed_at, refurbisher_id)")
    p.add_argument("--out", type=Path, help="write the figures here (JSON)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _evaluate_return_risk(args: argparse.Namespace) -> int:
    from photograde.return_risk import evaluate_return_risk

    h = evaluate_return_risk(args.bundle, args.manifest, progress=not args.quiet)
    print(_history_line(h))
    if args.out:
        args.out.write_text(json.dumps(h, indent=2) + "\n")
    return 0


def register(groups: dict[str, argparse._SubParsersAction]) -> None:
    """Add ``train release`` and ``evaluate bundle`` to the training command groups."""
    groups["train"].add_parser("release", help="the shipped model's recipe: synthetic data, "
                               "vision, tabular, fusion, bundle, evaluation, model card",
                               populate=_release_options).set_defaults(func=_release)
    groups["train"].add_parser("return-risk", help="the return-risk model on what a bundle "
                               "sees in a history's photos, with the sellers' trust; scored "
                               "on a held-out history, optionally installed in the bundle",
                               populate=_return_risk_options).set_defaults(func=_return_risk)
    groups["evaluate"].add_parser("bundle", help="metrics of an exported bundle as served "
                                  "(torch-free), per source and per grade",
                                  populate=_evaluate_bundle_options
                                  ).set_defaults(func=_evaluate_bundle)
    groups["evaluate"].add_parser("photocheck", help="the photo check of a bundle as served, "
                                  "on sub-folders of labelled photos (front, back, "
                                  "not_a_phone, blurry, ...)",
                                  populate=_evaluate_photocheck_options
                                  ).set_defaults(func=_evaluate_photocheck)
    groups["evaluate"].add_parser("robustness", help="the served screen verdict on degraded "
                                  "copies of labelled fronts (compressed, downscaled, blurred, "
                                  "noisy, dark, bright, turned): refused, right or silently "
                                  "wrong", populate=_evaluate_robustness_options
                                  ).set_defaults(func=_evaluate_robustness)
    groups["evaluate"].add_parser("return-risk", help="the bundle's return-risk model on a "
                                  "history (ROC-AUC, PR-AUC, Brier, calibration)",
                                  populate=_evaluate_return_risk_options
                                  ).set_defaults(func=_evaluate_return_risk)
    groups["evaluate"].add_parser("precision", help="the bundle's int8 model against fp32 on "
                                  "labelled real fronts, recorded in its manifest (what "
                                  "precision=auto serves)", populate=_evaluate_precision_options
                                  ).set_defaults(func=_evaluate_precision)
