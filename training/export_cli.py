"""``photograde export``: a versioned ONNX bundle from the vision, tabular and fusion runs
(:func:`training.export.export_bundle`), with ``--localiser`` the two-stage pipeline
(:func:`training.crop_bundle.add_localiser`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def _crop_views(text: str) -> list[str]:
    from training.crop_bundle import parse_views

    try:
        return parse_views(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _export(args: argparse.Namespace) -> int:
    from training.export import export_bundle

    manifest = export_bundle(args.vision, args.tabular, args.fusion, args.out, int8=args.int8,
                             cache_dir=str(args.cache_dir) if args.cache_dir else None,
                             overwrite=args.overwrite, int8_eval=args.int8_eval)
    version = manifest.bundle_version
    if args.localiser:
        from fusion.bundle import load_manifest as load_bundle_manifest
        from training.crop_bundle import add_localiser

        version = add_localiser(args.out, args.localiser, args.crop_views, args.crop_long_side,
                                int8=args.int8)
        print(f"localiser of {args.localiser}: the model sees the device's crop in the "
              f"{' and '.join(args.crop_views)} photos ({args.crop_long_side} px long)")
        crop = load_bundle_manifest(args.out).crop
        q = crop.localiser.get("int8") if crop is not None else None
        if q:
            print(f"localiser int8 ({q['calibration_photos']} calibration photos): corners move "
                  f"by {100 * q['corner_change_mean']:.2f}% of the photo's side on average "
                  f"({100 * q['corner_change_max']:.2f}% at most)")
    print(f"bundle {version} written to {args.out}")
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


def register(sub: argparse._SubParsersAction, torch_command: Any) -> None:
    """``export`` under the root's commands; ``torch_command`` wraps its handler (torch on CPU,
    a clear error without the [train] extra)."""
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
    ex.add_argument("--localiser", type=Path, metavar="RUN",
                    help="two-stage pipeline: this 'train localiser' run finds the device and "
                         "the vision model sees its rectified crop (train it on crops: "
                         "scripts/crop-manifest)")
    ex.add_argument("--crop-views", type=_crop_views, default=["front", "back"],
                    metavar="VIEWS", help="with --localiser: the photos cropped (front, back "
                                          "or front,back)")
    ex.add_argument("--crop-long-side", type=int, default=448, metavar="PX",
                    help="with --localiser: the crop's longer side, as the training crops")
    ex.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    ex.add_argument("--cache-dir", type=Path)
    ex.set_defaults(func=torch_command(_export))
