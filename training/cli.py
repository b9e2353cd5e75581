"""Training sub-commands of ``photograde``: ``manifest check``, ``synth``, ``import-folder``,
``train vision|tabular|fusion|localiser``, ``cv vision``,
``evaluate vision|localiser``, ``explain`` and ``export``.

:func:`register` adds them to the root command line (:mod:`photograde.cli`). Each imports its
modules only when it runs; the options of ``train vision`` and ``cv vision`` are the fields of
:class:`~training.train_config.TrainConfig` that carry a help (their defaults and help come from
there; torch-free, so every sub-command's help works in a serving-only install). A sub-command
that needs the ``[train]`` extra and misses it fails with :class:`TrainExtraMissing`.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from training import export_cli, localise_cli, photocheck_cli
from training.train_config import TrainConfig
from vision.conditions import PARTS
from vision.errors import PhotogradeError

Handler = Callable[[argparse.Namespace], int]
Groups = dict[str, argparse._SubParsersAction]
CACHE_HELP = "decoded-image cache (default: $PHOTOGRADE_CACHE or ~/.cache/photograde/images)"
DEFAULTS = argparse.ArgumentDefaultsHelpFormatter


def grading_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--grading", default=None, metavar="CONFIG",
                   help="grading config: 'marketplace' (default), 'ctia' or a TOML file")


#: Top-level modules of the ``[train]`` extra (pyproject.toml) that the sub-commands import.
TRAIN_EXTRA = frozenset({"torch", "torchvision", "timm", "safetensors", "albumentations", "cv2",
                         "sklearn", "skl2onnx", "onnx", "matplotlib"})


class TrainExtraMissing(PhotogradeError):
    """A training sub-command runs in an install without the ``[train]`` extra."""


def needs_train_extra(run: Handler) -> Handler:
    """Report a missing module of the ``[train]`` extra as the user's error, with the fix."""
    @functools.wraps(run)
    def wrapped(args: argparse.Namespace) -> int:
        try:
            return run(args)
        except ModuleNotFoundError as e:
            if (e.name or "").split(".")[0] not in TRAIN_EXTRA:
                raise
            raise TrainExtraMissing(
                f"this command needs the [train] extra ({e.name} is not installed): "
                "pip install 'photograde[train]' (or pip install -e '.[train]' in a "
                "checkout)") from e
    return wrapped


def _torch_command(run: Handler) -> Handler:
    """Torch on CPU: keep freed tensor buffers (no page-faulting of every batch's activations);
    without the ``[train]`` extra, a clear error (:func:`needs_train_extra`)."""
    @functools.wraps(run)
    def wrapped(args: argparse.Namespace) -> int:
        from training.malloc import keep_freed_memory

        keep_freed_memory()
        return run(args)
    return needs_train_extra(wrapped)


# -- TrainConfig <-> options -----------------------------------------------------------------
def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _dest(flag: str) -> str:
    return flag.lstrip("-").replace("-", "_")


def _option_fields() -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(TrainConfig) if "help" in f.metadata]


def add_train_options(p: argparse.ArgumentParser) -> None:
    """One option per TrainConfig field with a help, with the field's default."""
    for f in _option_fields():
        meta = f.metadata
        if "flag" in meta:  # a switch that turns a true field off
            p.add_argument(meta["flag"], action="store_true", help=meta["help"])
        elif isinstance(f.default, bool):
            p.add_argument(_flag(f.name), action="store_true", help=meta["help"])
        else:
            kwargs = {k: meta[k] for k in ("type", "metavar") if k in meta}
            if f.default is not None:
                kwargs.setdefault("type", type(f.default))
            p.add_argument(_flag(f.name), default=f.default, help=meta["help"], **kwargs)


def train_config(args: argparse.Namespace, **overrides: Any) -> TrainConfig:
    """The TrainConfig of parsed ``train vision`` or ``cv vision`` options."""
    values: dict[str, Any] = {
        "out": str(args.out), "grading": args.grading, "resume": getattr(args, "resume", False),
        "val_manifests": [str(m) for m in getattr(args, "val_manifest", None) or []]}
    for f in _option_fields():
        if "flag" in f.metadata:
            values[f.name] = not getattr(args, _dest(f.metadata["flag"]))
        else:
            value = getattr(args, f.name)
            values[f.name] = str(value) if isinstance(value, Path) else value
    values.update(overrides)
    if "manifests" not in values:
        values["manifests"] = [str(m) for m in args.manifest]
    return TrainConfig(**values)


# -- data: manifest check, synth, import-folder ----------------------------------------------
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


@needs_train_extra
def _synth(args: argparse.Namespace) -> int:
    import time

    from fusion.policy import load_policy
    from training.manifest import load_manifest
    from training.synth.generate import default_workers, generate

    start = time.perf_counter()
    workers = args.workers or default_workers()
    path = generate(args.devices, args.out, seed=args.seed, size=args.size,
                    policy=load_policy(args.grading), workers=workers,
                    progress=not args.quiet, mix=args.mix)
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
                                 args.part, source_from_names=args.source_from_name,
                                 annotations=args.annotations)
    print(f"wrote {path}: " + ", ".join(f"{k}={v}" for k, v in counts.items()))
    if args.annotations:
        from training.annotations import read_coco, sidecar_path

        sidecar = sidecar_path(path)
        n = len(read_coco(sidecar)) if sidecar.is_file() else 0
        print(f"wrote {sidecar}: the geometry of {n} photo(s)")
    return 0


def _add_data_commands(sub: argparse._SubParsersAction) -> argparse._SubParsersAction:
    man = sub.add_parser("manifest", help="dataset manifests")
    man_sub = man.add_subparsers(dest="manifest_command", required=True, metavar="ACTION")
    chk = man_sub.add_parser("check", help="validate a manifest: every problem, or a summary")
    chk.add_argument("manifest", type=Path)
    grading_option(chk)
    chk.set_defaults(func=_manifest_check)

    syn = sub.add_parser("synth", help="generate synthetic front/back photos and a manifest")
    syn.add_argument("--devices", type=int, required=True, help="number of devices")
    syn.add_argument("--out", type=Path, required=True, help="output folder")
    syn.add_argument("--seed", type=int, default=0)
    syn.add_argument("--size", type=int, default=1500, help="longer photo side in px")
    syn.add_argument("--workers", type=int, default=0, help="processes (default: CPU count)")
    syn.add_argument("--sheet", action="store_true", help="also write sheet.png")
    syn.add_argument("--mix", choices=("training", "marketplace"), default="training",
                     help="conditions drawn: every one often (training) or a marketplace's "
                          "listings, mostly excellent and good (a realistic sales history)")
    syn.add_argument("--quiet", action="store_true", help="no progress bar")
    grading_option(syn)
    syn.set_defaults(func=_synth)

    imp = sub.add_parser("import-folder",
                         help="a folder of labelled images (one sub-folder per label) to a "
                              "manifest")
    imp.add_argument("src", type=Path)
    imp.add_argument("--out", type=Path, required=True, help="manifest CSV to write")
    imp.add_argument("--part", choices=PARTS, default="screen")
    imp.add_argument("--map", action="append", metavar="FOLDER=LABEL[|LABEL]",
                     help="label mapping, repeatable, e.g. "
                          "intact=flawless|light_scratches|heavy_scratches")
    imp.add_argument("--source-from-name", action="store_true",
                     help="add a source column: each file name up to its first '-' "
                          "(files named <source>-<hash>.jpg)")
    imp.add_argument("--annotations", type=Path, metavar="COCO.json",
                     help="device outlines (COCO keypoints: phone, screen, camera; 4 corners) "
                          "matched by file name, written next to the manifest as "
                          "<stem>.annotations.json")
    imp.set_defaults(func=_import_folder)
    return man_sub


# -- train vision|tabular|fusion, cv vision ---------------------------------------------------
@_torch_command
def _train_vision(args: argparse.Namespace) -> int:
    from training.vision_train import train_vision

    summary = train_vision(train_config(args))
    if summary:
        print(json.dumps(summary, indent=2))
    return 0


@needs_train_extra
def _train_tabular(args: argparse.Namespace) -> int:
    from training.tabular_train import train_tabular

    summary = train_tabular(args.manifest, args.out, grading=args.grading, seed=args.seed)
    print(json.dumps({"metrics": summary["metrics"], "data": summary["data"],
                      "model": summary["model"]}, indent=2))
    return 0


@needs_train_extra
def _train_fusion(args: argparse.Namespace) -> int:
    from training.fusion_train import train_fusion

    result = train_fusion([str(m) for m in args.manifest], args.vision, args.tabular, args.out,
                          grading=args.grading,
                          cache_dir=str(args.cache_dir) if args.cache_dir else None)
    print(json.dumps(result["metrics"], indent=2))
    return 0


def _cv_by_source(args: argparse.Namespace, base: TrainConfig) -> int:
    from training.loso import METHODS, leave_one_source_out

    result = leave_one_source_out(args.manifest, args.out, base,
                                  extra_manifests=[str(m) for m in args.extra_manifest or []])
    for held, split in result["splits"].items():
        for name in METHODS:
            r = split[name]
            print(f"held out {held}: {name:12s} ROC-AUC {r['roc_auc']:.4f}  balanced accuracy "
                  f"{r['balanced_accuracy']:.4f}  (n={r['n']})")
    print(f"details: {Path(args.out) / 'loso.json'}")
    return 0


@_torch_command
def _cv_vision(args: argparse.Namespace) -> int:
    from training.cv import cross_validate

    base = train_config(args, manifests=[str(args.manifest)])
    if args.by_source:
        if args.no_probe or args.probe_only:
            raise PhotogradeError("--by-source scores the probe and fine-tuning together: "
                                  "drop --no-probe / --probe-only")
        return _cv_by_source(args, base)
    result = cross_validate(args.manifest, args.out, base, folds=args.folds,
                            extra_manifests=[str(m) for m in args.extra_manifest or []],
                            probe=not args.no_probe, finetune=not args.probe_only)
    for name in ("probe", "finetune", "served"):
        if name in result:
            r = result[name]
            print(f"{name:9s} ROC-AUC {r['roc_auc_mean']:.4f} ± {r['roc_auc_std']:.4f}  "
                  f"balanced accuracy {r['balanced_accuracy_mean']:.4f} ± "
                  f"{r['balanced_accuracy_std']:.4f}  (pooled out-of-fold: ROC-AUC "
                  f"{r['pooled']['roc_auc']:.4f}, balanced accuracy "
                  f"{r['pooled']['balanced_accuracy']:.4f})")
    print(f"details: {Path(args.out) / 'cv.json'}")
    return 0


def _train_vision_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--manifest", type=Path, action="append", required=True,
                   help="training manifest (repeat to mix several)")
    p.add_argument("--out", type=Path, required=True, help="run directory")
    p.add_argument("--val-manifest", type=Path, action="append",
                   help="validation manifest (default: a split of the training data)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    add_train_options(p)
    grading_option(p)


def _cv_vision_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--manifest", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True, help="folder for folds and cv.json")
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--by-source", action="store_true",
                   help="instead of k folds, hold out each source in turn (the manifest's "
                        "source column, else each file name up to its first '-'); writes "
                        "loso.json")
    p.add_argument("--extra-manifest", type=Path, action="append",
                   help="also train every fold on this manifest (e.g. synthetic devices)")
    p.add_argument("--no-probe", action="store_true", help="skip the probe baseline")
    p.add_argument("--probe-only", action="store_true", help="only the probe baseline")
    add_train_options(p)
    grading_option(p)


def _add_train_commands(sub: argparse._SubParsersAction) -> Groups:
    train = sub.add_parser("train", help="train a model")
    train_sub = train.add_subparsers(dest="train_command", required=True, metavar="MODEL")
    train_sub.add_parser("vision", help="fine-tune the timm condition model",
                         formatter_class=DEFAULTS, populate=_train_vision_options
                         ).set_defaults(func=_train_vision)
    tab = train_sub.add_parser("tabular", help="train the return-risk model (scikit-learn, "
                               "exported to ONNX) on manifests with returned and "
                               "refurbisher_grade", formatter_class=DEFAULTS)
    tab.add_argument("--manifest", type=Path, action="append", required=True,
                     help="training manifest (repeat to mix several)")
    tab.add_argument("--out", type=Path, required=True, help="run directory")
    tab.add_argument("--seed", type=int, default=0, help="held-out split and CV folds")
    grading_option(tab)
    tab.set_defaults(func=_train_tabular)
    fus = train_sub.add_parser("fusion", help="fit the fusion layer on labelled grades")
    fus.add_argument("--manifest", type=Path, action="append", required=True)
    fus.add_argument("--vision", type=Path, required=True, help="vision run directory")
    fus.add_argument("--tabular", type=Path, required=True, help="tabular run directory")
    fus.add_argument("--out", type=Path, required=True, help="fusion run directory")
    fus.add_argument("--cache-dir", type=Path)
    grading_option(fus)
    fus.set_defaults(func=_train_fusion)

    cv = sub.add_parser("cv", help="cross-validation")
    cv_sub = cv.add_subparsers(dest="cv_command", required=True, metavar="MODEL")
    cv_sub.add_parser("vision", help="k-fold CV of cracked vs not on a single-view manifest, "
                      "fine-tuning vs the frozen-feature probe (or --by-source: "
                      "leave-one-source-out)", formatter_class=DEFAULTS,
                      populate=_cv_vision_options).set_defaults(func=_cv_vision)
    return {"train": train_sub, "cv": cv_sub}


# -- evaluate vision, explain, export ---------------------------------------------------------
@_torch_command
def _evaluate_vision(args: argparse.Namespace) -> int:
    from training.vision_eval import evaluate_vision, summary_line

    result = evaluate_vision(args.run, args.manifest, args.out, cache_dir=args.cache_dir,
                             batch_size=args.batch_size, device=args.device, worst=args.worst,
                             progress=not args.quiet, grading=args.grading)
    for part in PARTS:
        if part in result:
            print(summary_line(part, result[part]))
    print(f"report: {Path(args.out) / 'report.md'}")
    return 0


@_torch_command
def _explain(args: argparse.Namespace) -> int:
    from training.explain import explain

    print(json.dumps(explain(args.run, args.image, args.part, args.out, args.class_name),
                     indent=2))
    return 0


def _add_model_commands(sub: argparse._SubParsersAction) -> argparse._SubParsersAction:
    ev = sub.add_parser("evaluate", help="evaluate a trained model")
    ev_sub = ev.add_subparsers(dest="evaluate_command", required=True, metavar="MODEL")
    evv = ev_sub.add_parser("vision", help="metrics, plots and a report of a vision run on "
                            "labelled manifests", formatter_class=DEFAULTS)
    evv.add_argument("--run", type=Path, required=True,
                     help="run directory (train vision --out) or shipped model directory")
    evv.add_argument("--manifest", type=Path, action="append", required=True,
                     help="evaluation manifest (repeat for several)")
    evv.add_argument("--out", type=Path, required=True, help="report folder")
    evv.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    evv.add_argument("--batch-size", type=int, default=64)
    evv.add_argument("--cache-dir", type=Path, help=CACHE_HELP)
    evv.add_argument("--worst", type=int, default=16, help="worst mistakes shown per head")
    evv.add_argument("--quiet", action="store_true", help="no progress bars")
    grading_option(evv)
    evv.set_defaults(func=_evaluate_vision)

    exp = sub.add_parser("explain", help="class activation heatmap of one photo (JSON + PNG)")
    exp.add_argument("--run", type=Path, required=True, help="run directory (train vision --out)")
    exp.add_argument("--image", type=Path, required=True, help="photo")
    exp.add_argument("--part", choices=PARTS, required=True,
                     help="screen for a front photo, shell for a back photo")
    exp.add_argument("--class", dest="class_name", metavar="CLASS",
                     help="condition to explain (default: the predicted one)")
    exp.add_argument("--out", type=Path, required=True, help="overlay PNG to write")
    exp.set_defaults(func=_explain)

    return ev_sub


def register(sub: argparse._SubParsersAction) -> Groups:
    """Add the training sub-commands to ``sub`` (the root's, whose parsers take ``populate``);
    returns the command groups by name (``manifest``, ``train``, ``cv``, ``evaluate``)."""
    groups = {"manifest": _add_data_commands(sub)}
    groups.update(_add_train_commands(sub))
    photocheck_cli.register(groups["train"], _torch_command, DEFAULTS)
    groups["evaluate"] = _add_model_commands(sub)
    localise_cli.register(groups["train"], groups["evaluate"], _torch_command, needs_train_extra,
                          DEFAULTS)
    export_cli.register(sub, _torch_command)
    return groups
