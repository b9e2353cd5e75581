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


def _train_vision(args: argparse.Namespace) -> int:
    from training.vision_train import TrainConfig, train_vision

    cfg = TrainConfig(
        manifests=[str(m) for m in args.manifest], out=str(args.out),
        val_manifests=[str(m) for m in args.val_manifest or []], backbone=args.backbone,
        img_size=args.img_size, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        backbone_lr_mult=args.backbone_lr_mult, accum_steps=args.accum_steps,
        patience=args.patience, val_fraction=args.val_fraction,
        freeze_backbone=args.freeze_backbone, head_epochs=args.head_epochs,
        pretrained=not args.no_pretrained, weights=str(args.weights) if args.weights else None,
        device=args.device, amp=not args.no_amp, seed=args.seed, workers=args.workers,
        cache_dir=str(args.cache_dir) if args.cache_dir else None, grading=args.grading,
        resume=args.resume, progress=not args.quiet)
    summary = train_vision(cfg)
    if summary:
        print(json.dumps(summary, indent=2))
    return 0


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
    tv.add_argument("--val-fraction", type=float, default=0.15)
    tv.add_argument("--backbone", default="tf_efficientnet_lite0", help="any timm model name")
    tv.add_argument("--img-size", type=int, default=224)
    tv.add_argument("--epochs", type=int, default=10)
    tv.add_argument("--batch-size", type=int, default=32)
    tv.add_argument("--accum-steps", type=int, default=1, help="gradient accumulation")
    tv.add_argument("--lr", type=float, default=1e-3, help="heads' learning rate")
    tv.add_argument("--backbone-lr-mult", type=float, default=0.3,
                    help="backbone learning rate = lr x this")
    tv.add_argument("--patience", type=int, default=4, help="early stopping, in epochs")
    tv.add_argument("--freeze-backbone", action="store_true",
                    help="baseline: linear probe on frozen pretrained features")
    tv.add_argument("--head-epochs", type=int, default=0,
                    help="staged fine-tuning: train the heads alone for this many epochs first")
    tv.add_argument("--weights", type=Path, help="backbone weights (safetensors or state dict)")
    tv.add_argument("--no-pretrained", action="store_true", help="train from scratch")
    tv.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    tv.add_argument("--no-amp", action="store_true", help="no mixed precision on CUDA")
    tv.add_argument("--seed", type=int, default=0)
    tv.add_argument("--workers", type=int, default=-1, help="DataLoader workers (-1: auto)")
    tv.add_argument("--cache-dir", type=Path, help="decoded-image cache "
                    "(default: $PHOTOGRADE_CACHE or ~/.cache/photograde/images)")
    tv.add_argument("--resume", action="store_true", help="continue the run in --out")
    tv.add_argument("--quiet", action="store_true", help="no progress bars")
    grading(tv)
    tv.set_defaults(func=_train_vision)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    from fusion.policy import ConfigError
    from training.manifest import ManifestError

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
