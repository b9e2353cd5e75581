"""``photograde train localiser`` and ``photograde evaluate localiser`` (issue 19, item 2):
see :mod:`training.localise_train` and :mod:`training.localise_eval`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def _train(args: argparse.Namespace) -> int:
    from training.localise_train import LocaliseConfig, train_localiser

    config = train_localiser(LocaliseConfig(
        manifests=[str(m) for m in args.manifest], out=str(args.out), img_size=args.img_size,
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, negatives=args.negatives,
        seed=args.seed, pretrained=not args.no_pretrained,
        weights=str(args.weights) if args.weights else None, progress=not args.quiet))
    t = config["training"]
    print(f"localiser written to {args.out}: {t['photos']} photos, {args.epochs} epoch(s) in "
          f"{t['seconds']:.0f} s, final loss {t['epoch_losses'][-1]:.4f}, parity max "
          f"|torch - onnxruntime| = {config['parity_max_abs_diff']:.2e}, presence head: "
          f"{'yes' if config['presence_head'] else 'no (--negatives 0)'}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from training.localise_eval import evaluate_localiser, summary_line

    report = evaluate_localiser(args.model, [str(m) for m in args.manifest],
                                negatives=args.negatives, progress=not args.quiet)
    for name, figures in report["sides"].items():
        print(summary_line(name, figures))
    if "negatives" in report:
        n = report["negatives"]
        print(f"no phone: {n['photos']} scenes, found in {n['found_rate']:.1%}")
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        print(f"report: {args.out}")
    return 0


def register(train_sub: argparse._SubParsersAction, evaluate_sub: argparse._SubParsersAction,
             torch_command: Any, train_extra: Any, formatter: Any) -> None:
    """``train localiser`` and ``evaluate localiser``; the wrappers report a missing
    [train] extra (``torch_command`` also sets up torch on CPU)."""
    p = train_sub.add_parser("localiser", formatter_class=formatter,
                             help="train the device localiser (4 corners + device found) on "
                                  "manifests with a geometry sidecar; writes ONNX")
    p.add_argument("--manifest", type=Path, action="append", required=True,
                   help="training manifest with <stem>.annotations.json (repeatable)")
    p.add_argument("--out", type=Path, required=True, help="run directory")
    p.add_argument("--img-size", type=int, default=160, help="input size (squashed square)")
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (one-cycle)")
    p.add_argument("--negatives", type=int, default=200,
                   help="synthetic scenes without a phone for the presence head (0: no "
                        "presence head)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--weights", type=Path, help="backbone weights file (default: ImageNet, "
                   "offline)")
    p.add_argument("--no-pretrained", action="store_true", help="random backbone")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=torch_command(_train))

    e = evaluate_sub.add_parser("localiser", formatter_class=formatter,
                                help="corner error (fraction of the device diagonal) and "
                                     "found rate of a localiser, per side")
    e.add_argument("--model", type=Path, required=True,
                   help="run directory of 'train localiser', or its localiser.onnx")
    e.add_argument("--manifest", type=Path, action="append", required=True,
                   help="manifest with a geometry sidecar (repeatable)")
    e.add_argument("--negatives", type=int, default=0,
                   help="also this many synthetic scenes without a phone (false found rate)")
    e.add_argument("--out", type=Path, help="JSON report to write")
    e.add_argument("--quiet", action="store_true", help="no progress bar")
    e.set_defaults(func=train_extra(_evaluate))
