"""Decoding a 12-MP phone JPEG to the model input: JPEG draft mode vs a full decode.

Prints, in one run, the median time of (a) the serving path (``vision.preprocess``: DCT-scaled
JPEG decoding to just above the input size, EXIF orientation, resize) and (b) a full-resolution
decode followed by the same resize, and their ratio (target <= 0.25).

    python -m benchmarks.decode [--img-size 224] [--repeat 15]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from benchmarks._common import median_ms
from benchmarks._photos import phone_jpegs
from vision.preprocess import RESAMPLE, PreprocessConfig, normalize, preprocess


def full_decode(path: Path, cfg: PreprocessConfig) -> np.ndarray:
    with Image.open(path) as raw:
        im = ImageOps.exif_transpose(raw).convert("RGB")  # decodes all 12 MP
        small = im.resize((cfg.img_size, cfg.img_size), RESAMPLE, reducing_gap=None)
    return normalize(np.asarray(small), cfg)



def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--img-size", type=int, default=224)
    ap.add_argument("--repeat", type=int, default=15)
    args = ap.parse_args()
    cfg = PreprocessConfig(img_size=args.img_size, mean=(0.5,) * 3, std=(0.5,) * 3)
    path = phone_jpegs(Path(tempfile.mkdtemp()), n=1)[0]
    with Image.open(path) as im:
        w, h = im.size
    draft = median_ms(lambda: preprocess(path, cfg), args.repeat)
    full = median_ms(lambda: full_decode(path, cfg), args.repeat)
    print(f"{w}x{h} JPEG ({path.stat().st_size / 1e6:.1f} MB) -> {args.img_size} px input")
    print(f"draft decode + resize (serving path): {draft:7.1f} ms")
    print(f"full decode + resize:                 {full:7.1f} ms")
    print(f"ratio: {draft / full:.3f} (target <= 0.25)")


if __name__ == "__main__":
    main()
