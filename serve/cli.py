"""``photograde``: one command line for everything.

Each sub-command imports its module only when run, so serving never imports torch.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from training.vision_train import TrainConfig

Handler = Callable[[argparse.Namespace], int]


def _manifest_check(args: argparse.Namespace) -> int:
    from fusion.policy import load_policy
    from training.manifest import read_manifest

    manifest, errors = read_manifest(args.manifest, load_policy(args.grading))
    if manifest is None:
        for e in errors:
            print(e, file=sys.stderr)
        print(f"{args.manifest}: {len(errors)} problem(s)", file=sys.stderr)
        return 1
    print(json.dumps(manifest.summary(), indent=2))
    return 0


def _synth(args: argparse.Namespace) -> int:
    import time

    from fusion.policy import load_policy
    from training.manifest import load_manifest
    from training.synth.generate import default_workers, generate

    start = time.perf_counter()
    workers = args.workers or default_workers()
    path = generate(args.devices, args.out, seed=args.seed, size=args.size,
                    policy=load_policy(args.grading), workers=workers,
                    progress=not args.quiet)
    elapsed = time.perf_counter() - start
    manifest = load_manifest(path, load_policy(args.grading))
    print(f"wrote {2 * len(manifest)} photos and {path} in {elapsed:.1f} s "
          f"({len(manifest) / elapsed:.1f} devices/s, {workers} worker(s))")
    if args.sheet:
        from training.synth.sheet import contact_sheet

        print(f"contact sheet: {contact_sheet(manifest, Path(args.out) / 'sheet.png')}")
    return 0


def _import_folder(args: argparse.Namespace) -> int:
    from training.import_folder import import_folder, parse_mapping

    path, counts = import_folder(args.src, args.out, parse_mapping(args.map or [], args.part),
                                 args.part)
    print(f"wrote {path}: " + ", ".join(f"{k}={v}" for k, v in counts.items()))
    return 0


def _train_config(args: argparse.Namespace, **overrides) -> TrainConfig:
    from training.vision_train import TrainConfig

    manifests = overrides.pop("manifests", None) or [str(m) for m in args.manifest]
    return TrainConfig(**{
        "manifests": manifests, "out": str(args.out),
        "val_manifests": [str(m) for m in getattr(args, "val_manifest", None) or []],
        "backbone": args.backbone, "img_size": args.img_size, "epochs": args.epochs,
        "batch_size": args.batch_size, "lr": args.lr, "backbone_lr_mult": args.backbone_lr_mult,
        "accum_steps": args.accum_steps, "patience": args.patience,
        "val_fraction": args.val_fraction, "freeze_backbone": args.freeze_backbone,
        "freeze_stages": args.freeze_stages,
        "head_epochs": args.head_epochs, "pretrained": not args.no_pretrained,
        "weights": str(args.weights) if args.weights else None,
        "init_from": str(args.init_from) if getattr(args, "init_from", None) else None,
        "device": args.device,
        "amp": not args.no_amp, "seed": args.seed, "workers": args.workers,
        "cache_dir": str(args.cache_dir) if args.cache_dir else None, "grading": args.grading,
        "resume": getattr(args, "resume", False), "progress": not args.quiet, **overrides})


def _train_vision(args: argparse.Namespace) -> int:
    from training.vision_train import train_vision

    summary = train_vision(_train_config(args))
    if summary:
        print(json.dumps(summary, indent=2))
    return 0


def _train_tabular(args: argparse.Namespace) -> int:
    from tabular.model import train_tabular

    summary = train_tabular(args.manifest, args.out, grading=args.grading, seed=args.seed)
    print(json.dumps({"metrics": summary["metrics"], "data": summary["data"],
                      "model": summary["model"]}, indent=2))
    return 0


def _cv_vision(args: argparse.Namespace) -> int:
    from training.cv import cross_validate

    base = _train_config(args, manifests=[str(args.manifest)])
    result = cross_validate(args.manifest, args.out, base, folds=args.folds,
                            extra_manifests=[str(m) for m in args.extra_manifest or []],
                            probe=not args.no_probe, finetune=not args.probe_only)
    for name in ("probe", "finetune"):
        if name in result:
            r = result[name]
            print(f"{name:9s} ROC-AUC {r['roc_auc_mean']:.4f} ± {r['roc_auc_std']:.4f}  "
                  f"balanced accuracy {r['balanced_accuracy_mean']:.4f} ± "
                  f"{r['balanced_accuracy_std']:.4f}  (pooled out-of-fold: ROC-AUC "
                  f"{r['pooled']['roc_auc']:.4f}, balanced accuracy "
                  f"{r['pooled']['balanced_accuracy']:.4f})")
    print(f"details: {Path(args.out) / 'cv.json'}")
    return 0


def _evaluate_vision(args: argparse.Namespace) -> int:
    from training.vision_eval import evaluate_vision, summary_line

    result = evaluate_vision(args.run, args.manifest, args.out, cache_dir=args.cache_dir,
                             batch_size=args.batch_size, device=args.device, worst=args.worst,
                             progress=not args.quiet, grading=args.grading)
    for part in ("screen", "shell"):
        if part in result:
            print(summary_line(part, result[part]))
    print(f"report: {Path(args.out) / 'report.md'}")
    return 0


def _explain(args: argparse.Namespace) -> int:
    from training.explain import explain

    print(json.dumps(explain(args.run, args.image, args.part, args.out, args.class_name),
                     indent=2))
    return 0


def _train_fusion(args: argparse.Namespace) -> int:
    from training.fusion_train import train_fusion

    result = train_fusion([str(m) for m in args.manifest], args.vision, args.tabular, args.out,
                          grading=args.grading,
                          cache_dir=str(args.cache_dir) if args.cache_dir else None)
    print(json.dumps(result["metrics"], indent=2))
    return 0


def _export(args: argparse.Namespace) -> int:
    from training.export import export_bundle

    manifest = export_bundle(args.vision, args.tabular, args.fusion, args.out, int8=args.int8,
                             cache_dir=str(args.cache_dir) if args.cache_dir else None,
                             overwrite=args.overwrite, int8_eval=args.int8_eval)
    print(f"bundle {manifest.bundle_version} written to {args.out}")
    print(f"vision parity: max |torch - onnxruntime| = "
          f"{manifest.vision.parity_max_abs_diff:.2e}")
    if manifest.vision.int8:
        q = manifest.vision.int8
        change = ", ".join(f"{k} {v:+.2f}" for k, v in q.macro_f1_change_points.items())
        print(f"int8 on {q.evaluation_photos} photos ({q.evaluated_on}): macro-F1 "
              f"change (points) {change}, CPU speed-up "
              f"{q.speedup:.2f}x ({q.cpu_ms_fp32_batch2_1thread:.1f} ms -> "
              f"{q.cpu_ms_int8_batch2_1thread:.1f} ms, batch of 2, 1 thread)")
    return 0


def _predict(args: argparse.Namespace) -> int:
    from serve.runtime import Grader
    from tabular.schema import parse_device_info

    try:
        info = parse_device_info(args.device_info.read_bytes())
    except OSError as e:
        raise ValueError(f"--device-info: cannot read {args.device_info} ({e.strerror})") from None
    grader = Grader(args.bundle, threads=args.threads, int8=args.int8)
    photos = []
    for name, path in (("--front", args.front), ("--back", args.back)):
        try:
            photos.append(grader.decode(path))
        except (ValueError, OSError) as e:
            raise ValueError(f"{name} {path}: {e}") from None
    result = grader.grade(photos[0], photos[1], info, args.refurbisher_grade,
                          heatmaps=args.heatmaps is not None)
    out = result.model_dump(mode="json", exclude={"parts": {"__all__": {"heatmap_png"}}})
    if args.heatmaps is not None:
        import base64

        args.heatmaps.mkdir(parents=True, exist_ok=True)
        for part, value in result.parts.items():
            path = args.heatmaps / f"{part}.png"
            path.write_bytes(base64.b64decode(value.heatmap_png or ""))
            out["parts"][part]["heatmap"] = str(path)
    out["execution_provider"] = grader.provider
    print(json.dumps(out, indent=2))
    return 0


def _bundle_verify(args: argparse.Namespace) -> int:
    from fusion.bundle import verify_bundle

    print(json.dumps(verify_bundle(args.bundle), indent=2))
    return 0


def _serve(args: argparse.Namespace) -> int:
    import os

    import uvicorn

    from fusion.bundle import load_manifest
    from serve.settings import Settings

    overrides = {k: v for k, v in (("bundle", args.bundle), ("host", args.host),
                                   ("port", args.port), ("workers", args.workers),
                                   ("threads", args.threads)) if v is not None}
    settings = Settings(**overrides)
    load_manifest(settings.bundle)  # refuse a missing or tampered bundle before starting
    for key, value in overrides.items():  # workers build their app from the environment
        os.environ[f"PHOTOGRADE_{key.upper()}"] = str(value)
    print(f"photograde: serving {settings.bundle} on http://{settings.host}:{settings.port} "
          f"(docs: /docs)", file=sys.stderr)
    uvicorn.run("serve.app:app_from_env", factory=True, host=settings.host, port=settings.port,
                workers=settings.workers, log_level="info")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from serve.demo import run_demo

    return run_demo(args.dir, args.host, args.port)


def _workflow_db(args: argparse.Namespace):
    """The workflow database of the settings (--database-url or PHOTOGRADE_DATABASE_URL),
    migrated to the latest schema."""
    logging.getLogger("alembic").setLevel(logging.WARNING)  # before its import-time chatter
    from serve.db import Database
    from serve.settings import Settings

    overrides = {"database_url": args.database_url} if args.database_url else {}
    db = Database(Settings(**overrides).database_url)
    db.migrate()
    return db


def _keys(args: argparse.Namespace) -> int:
    db = _workflow_db(args)
    from serve.auth import create_key, list_keys, revoke_key

    if args.keys_command == "create":
        record, key = create_key(db, args.role, args.refurbisher, args.name)
        print(f"created {record['role']} key {record['id']}"
              + (f" for refurbisher {record['refurbisher_id']}" if record["refurbisher_id"]
                 else "") + "; it is shown only once:", file=sys.stderr)
        print(key)
    elif args.keys_command == "list":
        for k in list_keys(db):
            print(f"{k['id']}  {k['role']:<11s} {k['refurbisher_id'] or '-':<12s} "
                  f"{'revoked ' + k['revoked_at'] if k['revoked_at'] else 'active':<40s} "
                  f"{k['name'] or ''}".rstrip())
    else:
        record = revoke_key(db, args.key_id)
        if record is None:
            raise ValueError(f"key {args.key_id!r} not found")
        print(f"revoked {record['id']} at {record['revoked_at']}")
    db.dispose()
    return 0


def _db(args: argparse.Namespace) -> int:
    db = _workflow_db(args)
    if args.db_command == "seed":
        from serve.photostore import PhotoStore
        from serve.runtime import Grader
        from serve.seed import seed_history
        from serve.settings import Settings

        settings = Settings(**{k: v for k, v in (("bundle", args.bundle),
                                                 ("photo_dir", args.photo_dir)) if v})
        counts = seed_history(db, PhotoStore(settings.photo_dir), args.manifest,
                              grader=Grader(settings.bundle), n_refurbishers=args.refurbishers)
        print(json.dumps(counts, indent=2))
    else:
        print(f"{db.url.render_as_string(hide_password=True)}: schema up to date")
    db.dispose()
    return 0


def _add_train_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backbone", default="tf_efficientnet_lite0", help="any timm model name")
    p.add_argument("--img-size", type=int, default=224)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--accum-steps", type=int, default=1, help="gradient accumulation")
    p.add_argument("--lr", type=float, default=1e-3, help="heads' learning rate")
    p.add_argument("--backbone-lr-mult", type=float, default=0.3,
                   help="backbone learning rate = lr x this")
    p.add_argument("--val-fraction", type=float, default=0.15)
    p.add_argument("--patience", type=int, default=4, help="early stopping, in epochs")
    p.add_argument("--freeze-backbone", action="store_true",
                   help="baseline: linear probe on frozen pretrained features")
    p.add_argument("--freeze-stages", type=int, default=3,
                   help="keep the stem and this many early backbone stages frozen "
                        "(0: fine-tune everything)")
    p.add_argument("--head-epochs", type=int, default=0,
                   help="staged fine-tuning: train the heads alone for this many epochs first")
    p.add_argument("--weights", type=Path, help="backbone weights (safetensors or state dict)")
    p.add_argument("--init-from", type=Path, metavar="RUN_DIR",
                   help="start from a finished run's model (backbone and heads), e.g. to "
                        "fine-tune it at a larger --img-size")
    p.add_argument("--no-pretrained", action="store_true", help="train from scratch")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    p.add_argument("--no-amp", action="store_true",
                   help="no mixed precision (default: on for CUDA and bf16-capable CPUs)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=-1, help="DataLoader workers (-1: auto)")
    p.add_argument("--cache-dir", type=Path, help="decoded-image cache "
                   "(default: $PHOTOGRADE_CACHE or ~/.cache/photograde/images)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="photograde", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def grading(p: argparse.ArgumentParser) -> None:
        p.add_argument("--grading", default=None, metavar="CONFIG",
                       help="grading config: 'marketplace' (default), 'ctia' or a TOML file")

    man = sub.add_parser("manifest", help="dataset manifests")
    man_sub = man.add_subparsers(dest="manifest_command", required=True, metavar="ACTION")
    chk = man_sub.add_parser("check", help="validate a manifest: every problem, or a summary")
    chk.add_argument("manifest", type=Path)
    grading(chk)
    chk.set_defaults(func=_manifest_check)

    syn = sub.add_parser("synth", help="generate synthetic front/back photos and a manifest")
    syn.add_argument("--devices", type=int, required=True, help="number of devices")
    syn.add_argument("--out", type=Path, required=True, help="output folder")
    syn.add_argument("--seed", type=int, default=0)
    syn.add_argument("--size", type=int, default=1500, help="longer photo side in px")
    syn.add_argument("--workers", type=int, default=0, help="processes (default: CPU count)")
    syn.add_argument("--sheet", action="store_true", help="also write sheet.png")
    syn.add_argument("--quiet", action="store_true", help="no progress bar")
    grading(syn)
    syn.set_defaults(func=_synth)

    imp = sub.add_parser("import-folder",
                         help="a folder of labelled images (one sub-folder per label) to a "
                              "manifest")
    imp.add_argument("src", type=Path)
    imp.add_argument("--out", type=Path, required=True, help="manifest CSV to write")
    imp.add_argument("--part", choices=("screen", "shell"), default="screen")
    imp.add_argument("--map", action="append", metavar="FOLDER=LABEL[|LABEL]",
                     help="label mapping, repeatable, e.g. "
                          "intact=flawless|light_scratches|heavy_scratches")
    imp.set_defaults(func=_import_folder)

    train = sub.add_parser("train", help="train a model")
    train_sub = train.add_subparsers(dest="train_command", required=True, metavar="MODEL")
    tv = train_sub.add_parser("vision", help="fine-tune the timm condition model",
                              formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    tv.add_argument("--manifest", type=Path, action="append", required=True,
                    help="training manifest (repeat to mix several)")
    tv.add_argument("--out", type=Path, required=True, help="run directory")
    tv.add_argument("--val-manifest", type=Path, action="append",
                    help="validation manifest (default: a split of the training data)")
    tv.add_argument("--resume", action="store_true", help="continue the run in --out")
    _add_train_options(tv)
    grading(tv)
    tv.set_defaults(func=_train_vision)
    tab = train_sub.add_parser("tabular", help="train the return-risk model (scikit-learn, "
                               "exported to ONNX) on manifests with returned and "
                               "refurbisher_grade",
                               formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    tab.add_argument("--manifest", type=Path, action="append", required=True,
                     help="training manifest (repeat to mix several)")
    tab.add_argument("--out", type=Path, required=True, help="run directory")
    tab.add_argument("--seed", type=int, default=0, help="held-out split and CV folds")
    grading(tab)
    tab.set_defaults(func=_train_tabular)

    cv = sub.add_parser("cv", help="cross-validation")
    cv_sub = cv.add_subparsers(dest="cv_command", required=True, metavar="MODEL")
    cvv = cv_sub.add_parser("vision", help="k-fold CV of cracked vs not on a single-view "
                            "manifest, fine-tuning vs the frozen-feature probe",
                            formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    cvv.add_argument("--manifest", type=Path, required=True)
    cvv.add_argument("--out", type=Path, required=True, help="folder for folds and cv.json")
    cvv.add_argument("--folds", type=int, default=5)
    cvv.add_argument("--extra-manifest", type=Path, action="append",
                     help="also train every fold on this manifest (e.g. synthetic devices)")
    cvv.add_argument("--no-probe", action="store_true", help="skip the probe baseline")
    cvv.add_argument("--probe-only", action="store_true", help="only the probe baseline")
    _add_train_options(cvv)
    grading(cvv)
    cvv.set_defaults(func=_cv_vision)

    ev = sub.add_parser("evaluate", help="evaluate a trained model")
    ev_sub = ev.add_subparsers(dest="evaluate_command", required=True, metavar="MODEL")
    evv = ev_sub.add_parser("vision", help="metrics, plots and a report of a vision run on "
                            "labelled manifests",
                            formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    evv.add_argument("--run", type=Path, required=True, help="run directory (train vision --out)")
    evv.add_argument("--manifest", type=Path, action="append", required=True,
                     help="evaluation manifest (repeat for several)")
    evv.add_argument("--out", type=Path, required=True, help="report folder")
    evv.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    evv.add_argument("--batch-size", type=int, default=64)
    evv.add_argument("--cache-dir", type=Path, help="decoded-image cache "
                     "(default: $PHOTOGRADE_CACHE or ~/.cache/photograde/images)")
    evv.add_argument("--worst", type=int, default=16, help="worst mistakes shown per head")
    evv.add_argument("--quiet", action="store_true", help="no progress bars")
    grading(evv)
    evv.set_defaults(func=_evaluate_vision)

    exp = sub.add_parser("explain", help="class activation heatmap of one photo (JSON + PNG)")
    exp.add_argument("--run", type=Path, required=True, help="run directory (train vision --out)")
    exp.add_argument("--image", type=Path, required=True, help="photo")
    exp.add_argument("--part", choices=("screen", "shell"), required=True,
                     help="screen for a front photo, shell for a back photo")
    exp.add_argument("--class", dest="class_name", metavar="CLASS",
                     help="condition to explain (default: the predicted one)")
    exp.add_argument("--out", type=Path, required=True, help="overlay PNG to write")
    exp.set_defaults(func=_explain)

    tf = train_sub.add_parser("fusion", help="fit the fusion layer on labelled grades")
    tf.add_argument("--manifest", type=Path, action="append", required=True)
    tf.add_argument("--vision", type=Path, required=True, help="vision run directory")
    tf.add_argument("--tabular", type=Path, required=True, help="tabular run directory")
    tf.add_argument("--out", type=Path, required=True, help="fusion run directory")
    tf.add_argument("--cache-dir", type=Path)
    grading(tf)
    tf.set_defaults(func=_train_fusion)

    ex = sub.add_parser("export", help="write a versioned ONNX bundle for serving")
    ex.add_argument("--vision", type=Path, required=True, help="vision run directory")
    ex.add_argument("--tabular", type=Path, required=True, help="tabular run directory")
    ex.add_argument("--fusion", type=Path, required=True, help="fusion run directory")
    ex.add_argument("--out", type=Path, required=True, help="bundle directory")
    ex.add_argument("--int8", action="store_true",
                    help="also a statically quantised vision model (calibrated on training "
                         "photos), with its macro-F1 change and CPU speed-up")
    ex.add_argument("--int8-eval", type=Path, metavar="MANIFEST",
                    help="held-out manifest on which int8 is compared with fp32 (default: "
                         "the vision run's validation photos)")
    ex.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    ex.add_argument("--cache-dir", type=Path)
    ex.set_defaults(func=_export)

    pr = sub.add_parser("predict", help="grade one device with a bundle (torch-free)")
    pr.add_argument("--bundle", type=Path, required=True)
    pr.add_argument("--front", type=Path, required=True, help="front photo")
    pr.add_argument("--back", type=Path, required=True, help="back photo")
    pr.add_argument("--device-info", type=Path, required=True,
                    help="device facts and checks (JSON, see README)")
    pr.add_argument("--refurbisher-grade", help="the refurbisher's grade, for the decision")
    pr.add_argument("--heatmaps", type=Path, metavar="DIR",
                    help="write damage heatmaps (screen.png, shell.png) here")
    pr.add_argument("--threads", type=int, help="ONNX Runtime threads (default: CPU quota)")
    pr.add_argument("--int8", action="store_true", help="use the bundle's int8 vision model")
    pr.set_defaults(func=_predict)

    srv = sub.add_parser("serve", help="the scoring API (FastAPI on ONNX Runtime)")
    srv.add_argument("--bundle", type=Path, help="bundle directory (env PHOTOGRADE_BUNDLE)")
    srv.add_argument("--host", help="default 127.0.0.1 (env PHOTOGRADE_HOST)")
    srv.add_argument("--port", type=int, help="default 8000 (env PHOTOGRADE_PORT)")
    srv.add_argument("--workers", type=int, help="worker processes (default 1)")
    srv.add_argument("--threads", type=int, help="ONNX Runtime threads per worker "
                     "(default: the container's CPU quota)")
    srv.set_defaults(func=_serve)

    demo = sub.add_parser("demo", help="build a demo bundle and history if needed, then serve "
                          "the API and the UI with one demo key per role")
    demo.add_argument("--dir", type=Path, default=Path("demo"), help="default ./demo")
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=8000)
    demo.set_defaults(func=_demo)

    bun = sub.add_parser("bundle", help="model bundles")
    bun_sub = bun.add_subparsers(dest="bundle_command", required=True, metavar="ACTION")
    bv = bun_sub.add_parser("verify", help="re-check every hash and run the embedded samples")
    bv.add_argument("bundle", type=Path)
    bv.set_defaults(func=_bundle_verify)

    def database(p: argparse.ArgumentParser) -> None:
        p.add_argument("--database-url", help="default: PHOTOGRADE_DATABASE_URL or "
                       "sqlite:///./photograde.db")

    keys = sub.add_parser("keys", help="API keys of the workflow API")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    kc = keys_sub.add_parser("create", help="create a key and print it (once)")
    kc.add_argument("--role", required=True, choices=("refurbisher", "platform", "reviewer",
                                                      "admin"))
    kc.add_argument("--refurbisher", help="the refurbisher id (refurbisher keys only)")
    kc.add_argument("--name", help="a note: who or what uses the key")
    kl = keys_sub.add_parser("list", help="every key: id, role, refurbisher, state, name")
    kr = keys_sub.add_parser("revoke", help="revoke a key by its id")
    kr.add_argument("key_id")
    for p in (kc, kl, kr):
        database(p)
        p.set_defaults(func=_keys)

    dbp = sub.add_parser("db", help="the workflow database")
    db_sub = dbp.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    dbu = db_sub.add_parser("upgrade", help="migrate to the latest schema (alembic upgrade head)")
    dbs = db_sub.add_parser("seed", help="demo history from a synthetic manifest, graded by "
                            "the bundle's models")
    dbs.add_argument("manifest", type=Path)
    dbs.add_argument("--bundle", type=Path, help="default: PHOTOGRADE_BUNDLE")
    dbs.add_argument("--photo-dir", type=Path, help="default: PHOTOGRADE_PHOTO_DIR")
    dbs.add_argument("--refurbishers", type=int, help="keep this many refurbishers")
    for p in (dbu, dbs):
        database(p)
        p.set_defaults(func=_db)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Libraries log at WARNING (onnxruntime's quantiser logs hundreds of INFO lines to the
    # root logger); photograde's own loggers at INFO, or DEBUG with --verbose.
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("photograde").setLevel(logging.DEBUG if args.verbose else logging.INFO)
    from fusion.policy import ConfigError
    from training.manifest import ManifestError

    if args.func in (_train_vision, _cv_vision, _evaluate_vision, _explain, _export):
        from training.malloc import keep_freed_memory

        keep_freed_memory()  # torch on CPU: no page-faulting of every batch's activations
    try:
        return args.func(args)
    except (ValueError, ConfigError, ManifestError, FileNotFoundError) as e:
        print(f"photograde: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("photograde: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
