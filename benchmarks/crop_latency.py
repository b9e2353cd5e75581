"""What the device crop would cost a grade (issue 19, item 4): one core, two 12-MP JPEGs.

The whole-photo model input (the service's decode: one JPEG draft decode, resize, normalise)
against the crop's (:func:`vision.crop.crop_device`: a small decode, the localiser, a second
decode just large enough, the perspective warp; then the same resize and normalise), both
photos of a device, medians; then the bundle's full torch-free grade with whole photos
(``Grader.grade``) and the same grade with the crop's extra time added, and their ratio (the
issue's budget: 1.3x). A bundle that crops is timed as served, against one that does not, by
``python -m benchmarks.predict --bundle WHOLE --against CROPPING``; this one splits the input's
cost.

    python -m benchmarks.crop_latency --localiser runs/loc160 [--bundle B] [--repeat 20]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmarks._common import median_ms
from benchmarks._floor import pinned
from benchmarks._photos import upload_bytes
from serve.runtime import Grader
from serve.settings import SHIPPED_BUNDLE
from tabular.schema import parse_device_info
from tests.support import INFO
from vision.crop import crop_device
from vision.localise import Localiser
from vision.preprocess import normalize, resize_rgb


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--localiser", type=Path, required=True,
                    help="run directory of 'train localiser', or its localiser.onnx")
    ap.add_argument("--bundle", type=Path, default=SHIPPED_BUNDLE)
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--long-side", type=int, default=448, help="crop's longer side, pixels")
    args = ap.parse_args()
    photos, info = upload_bytes(2), parse_device_info(INFO)
    with pinned(1):
        grader, loc = Grader(args.bundle, threads=1, int8=True), Localiser(args.localiser, 1)
        pre = grader.pre

        def crops() -> list[object]:
            return [normalize(resize_rgb(crop_device(p, loc, args.long_side)[1], pre), pre)
                    for p in photos]

        whole = median_ms(lambda: [grader.decode(p) for p in photos], args.repeat)
        crop = median_ms(crops, args.repeat)
        grade = median_ms(lambda: grader.grade(photos[0], photos[1], info, "good"),
                          args.repeat)
    print(f"bundle {grader.manifest.bundle_version} (int8, {pre.img_size} px), localiser "
          f"{loc.pre.img_size} px, crop long side {args.long_side}; one core, two photos:")
    print(f"model input, whole photos: {whole:.1f} ms; device crops: {crop:.1f} ms "
          f"(+{crop - whole:.1f} ms)")
    print(f"full grade with whole photos: {grade:.1f} ms; with crops: {grade + crop - whole:.1f}"
          f" ms: {(grade + crop - whole) / grade:.2f}x (budget <= 1.3)")


if __name__ == "__main__":
    main()
