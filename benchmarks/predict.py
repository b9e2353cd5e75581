"""Full torch-free prediction for one device on one CPU thread.

Median time of ``Grader.grade`` for one device (two 12-MP JPEGs + the checklist: decoding,
vision model, fusion, return risk, decision), and its ratio to raw ONNX Runtime inference on
the two already-decoded tensors (target: <= 60 ms on this 2-core machine); then the photo check
of the two decoded photos (measured checks, and the bundle's photo-check model when it has one;
target: <= 10 ms a photo), which the service runs before every grade; and the two together as
the service runs them (a checked grade: the photo check's model scores each photo once, and
the grade reuses the front's score for the cracked-screen probe).

    python -m benchmarks.predict --bundle BUNDLE [--repeat 20] [--threads 1] [--int8]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from benchmarks._common import median_ms
from benchmarks._photos import upload_bytes
from serve.runtime import Grader, Photo
from tabular.schema import parse_device_info
from tests.support import INFO
from vision.photocheck import PhotoCheckConfig


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", type=Path, required=True)
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--int8", action="store_true")
    args = ap.parse_args()
    grader = Grader(args.bundle, threads=args.threads, int8=args.int8)
    photos = upload_bytes(2)
    info = parse_device_info(INFO)

    def decode_both(**flags: bool) -> list[Photo]:  # each photo as its side (a crop's view)
        return [grader.decode(p, view=v, **flags)
                for p, v in zip(photos, ("front", "back"), strict=True)]

    x = np.stack([p.x for p in decode_both()])
    full = median_ms(lambda: grader.grade(photos[0], photos[1], info, "good"), args.repeat)
    raw = median_ms(lambda: grader.run_vision(x), args.repeat)
    decoded = decode_both()
    decode = median_ms(decode_both, args.repeat)
    cfg = PhotoCheckConfig()
    check = median_ms(lambda: grader.check_photos(decoded, ["front", "back"], cfg), args.repeat)

    def checked_grade() -> None:  # the service's work: decode, measure and score, then grade
        both = decode_both(measured=True, scored=True)
        grader.check_photos(both, ["front", "back"], cfg)
        grader.grade(both[0], both[1], info, "good")

    checked = median_ms(checked_grade, args.repeat)
    print(f"bundle {grader.manifest.bundle_version} ({grader.vision_file}, "
          f"{grader.pre.img_size} px), {args.threads} thread(s), {grader.provider}")
    print(f"full prediction (2 x 12 MP JPEG + checklist): {full:7.1f} ms median")
    print(f"  of which decoding both photos:              {decode:7.1f} ms")
    print(f"raw onnxruntime on the 2 decoded tensors:     {raw:7.1f} ms")
    print(f"ratio full / raw: {full / raw:.2f}; target full <= 60 ms")
    model = "with" if grader.photocheck is not None else "without"
    print(f"photo check of both photos ({model} its model): {check:7.1f} ms "
          f"({check / 2:.1f} ms a photo; target <= 10)")
    print(f"checked grade (photo check, then the grade):  {checked:7.1f} ms")


if __name__ == "__main__":
    main()
