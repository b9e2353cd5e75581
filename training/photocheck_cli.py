"""``photograde train photocheck``: fit the photo check's learned part, measure it, add it to
a bundle (see :mod:`training.photocheck_train` and :mod:`training.photocheck_eval`)."""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from training.photocheck_eval import (
    build_held_out,
    check_ms,
    held_out_report,
    real_fronts_loso,
)
from training.photocheck_train import (
    CRACKED_WEIGHT,
    add_to_bundle,
    build_data,
    export_backbone,
    train_heads,
)
from vision.photocheck import PhotoCheckConfig

log = logging.getLogger("photograde.training")


def _calibration(pre: Any, sources: list[Any], n: int = 96) -> np.ndarray:
    from vision.preprocess import normalize, open_image, resize_rgb

    rng = np.random.default_rng(0)
    picked = [sources[i] for i in rng.choice(len(sources), min(n, len(sources)), replace=False)]
    return np.stack([normalize(resize_rgb(open_image(s, draft_size=pre.img_size), pre), pre)
                     for s in picked]).astype(np.float32)


def train_photocheck(bundle: Path, real: Path | None, synth: Path, synth_test: Path, *,
                     size: int = 224, int8: bool = True, seed: int = 0, n_synth: int = 600,
                     n_negative: int = 400, n_held: int = 300,
                     cracked_weight: float = CRACKED_WEIGHT,
                     progress: bool = True) -> dict[str, Any]:
    """Export the backbone (int8 by default), fit the heads, evaluate, write into ``bundle``;
    returns the report (also ``<bundle>.photocheck.json`` beside the bundle). ``n_synth``
    synthetic fronts and backs, ``n_negative`` photos of each kind without a phone, ``n_held``
    held-out photos of each kind; ``cracked_weight``: the cracked-screen probe's weight in the
    served screen probabilities (0: not blended)."""
    import onnxruntime as ort

    from training import photocheck_data as data
    from training.export import quantize_int8

    cfg = PhotoCheckConfig()
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = Path(tmp) / "fp32.onnx"
        pre = export_backbone(fp32, size)
        model = fp32
        if int8:
            calib = [*(data.manifest_photos(real, "front", 32, seed) if real else []),
                     *data.manifest_photos(synth, "front", 32, seed),
                     *data.manifest_photos(synth, "back", 32, seed),
                     *data.empty_scenes(12, seed + 99), *data.screen_images(12, seed + 97),
                     *data.crops(data.train_natural(), 12, seed + 98)]
            model = Path(tmp) / "int8.onnx"
            quantize_int8(fp32, model, _calibration(pre, calib))
        sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
        d = build_data(sess, pre, real, synth, n_synth=n_synth, n_empty=n_negative,
                       n_screens=n_negative, n_natural=n_negative, seed=seed, progress=progress)
        heads = train_heads(d)
        held = build_held_out(sess, pre, real or synth_test, synth_test, n=n_held,
                              seed=seed + 1, progress=progress)
        report = {"thresholds": cfg.model_dump(), "int8": int8, "input_size": size,
                  "real_fronts_leave_one_source_out": real_fronts_loso(d, cfg) if real else {},
                  "held_out": held_out_report(held, heads, cfg),
                  "cpu_one_thread": check_ms(model, heads, pre,
                                             data.manifest_photos(synth_test, "front", 20))}
        version = add_to_bundle(bundle, model, heads, pre, d, report, cracked_weight)
    (bundle.parent / f"{bundle.name}.photocheck.json").write_text(json.dumps(report, indent=2))
    log.info("photo check added to %s (bundle %s)", bundle, version)
    return report


def _run(args: argparse.Namespace) -> int:
    report = train_photocheck(args.bundle, args.real, args.synth, args.synth_test,
                              size=args.size, int8=not args.no_int8, seed=args.seed,
                              cracked_weight=args.cracked_weight,
                              progress=not args.no_progress)
    print(json.dumps(report, indent=2))
    return 0


def register(train_sub: argparse._SubParsersAction, wrap: Any, formatter: Any) -> None:
    """``train photocheck`` under ``train``; ``wrap`` reports a missing [train] extra."""
    p = train_sub.add_parser(
        "photocheck", formatter_class=formatter,
        help="fit the photo check (phone or not, front or back) and add it to a bundle")
    p.add_argument("--bundle", type=Path, required=True, help="bundle to add the check to")
    p.add_argument("--real", type=Path, required=True,
                   help="manifest of real front photos (import-folder; a source column "
                        "gives the leave-one-source-out figures)")
    p.add_argument("--synth", type=Path, required=True, help="synthetic training manifest")
    p.add_argument("--synth-test", type=Path, required=True,
                   help="synthetic manifest of another seed (held out)")
    p.add_argument("--size", type=int, default=224, help="input size of the check's backbone")
    p.add_argument("--no-int8", action="store_true", help="keep the backbone fp32 (about "
                   "2x slower; the default int8 keeps the check under 10 ms a photo)")
    p.add_argument("--cracked-weight", type=_weight, default=CRACKED_WEIGHT,
                   help="weight of the cracked-screen probe (a logistic head on the check's "
                        "frozen features, fitted on the labelled fronts) in the served screen "
                        "P(cracked); 0 turns the blend off")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=wrap(_run))


def _weight(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{text}: a weight between 0 and 1")
    return value
