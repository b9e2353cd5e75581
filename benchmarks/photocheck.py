"""The photo check's measurements of one draft-decoded 12-MP photo, part by part (one core).

Prints the median time (ms) of each part of :func:`vision.photocheck.measure` on the image the
service measures (JPEG draft decoding at the model's 224-px input: 375x500 for a 3000x4000
photo), then of the whole.

    python -m benchmarks.photocheck [--repeat 200]
"""

from __future__ import annotations

import argparse

import numpy as np
from PIL import Image

from benchmarks._common import median_ms
from benchmarks._photos import upload_bytes
from vision import photocheck as pc
from vision.preprocess import open_image_sized


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=200)
    args = ap.parse_args()
    image, _ = open_image_sized(upload_bytes(1)[0], draft_size=224)
    luma = image.convert("L")
    grey = pc._grey_u8(luma)
    parts = {
        "luminance (convert L)": lambda: image.convert("L"),
        f"resize to {pc.WORK_SIZE} px": lambda: pc._grey_u8(luma),
        "brightness percentiles": lambda: pc._percentiles_u8(
            np.bincount(grey.ravel(), minlength=256), [1, 90, 99]),
        "edge percentile 99.5": lambda: pc._edge_percentile(grey, 99.5),
        "noise level": lambda: pc.noise_level(grey),
        "perceptual hash": lambda: pc.perceptual_hash(luma),
        "  of which the 32x32 Lanczos resample": lambda: luma.resize(
            (32, 32), Image.Resampling.LANCZOS),
        "measure (all)": lambda: pc.measure(image),
    }
    print(f"photo {image.width}x{image.height}, median of {args.repeat}")
    for name, fn in parts.items():
        print(f"{name:40s} {median_ms(fn, args.repeat):6.3f} ms")


if __name__ == "__main__":
    main()
