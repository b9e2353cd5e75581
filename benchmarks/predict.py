"""Full torch-free prediction for one device on one CPU thread.

Median time of ``Grader.grade`` for one device (two 12-MP JPEGs + the checklist: decoding,
vision model, fusion, return risk, decision), and its ratio to raw ONNX Runtime inference on
the two already-decoded tensors (target: <= 60 ms on this 2-core machine); then the photo check
of the two decoded photos (measured checks, and the bundle's photo-check model when it has one;
target: <= 10 ms a photo), which the service runs before every grade; and the two together as
the service runs them (a checked grade: the photo check's model scores each photo once, and
the grade reuses the front's score for the cracked-screen probe). ``--against B2`` (repeatable)
then times the full grade of BUNDLE and of each B2 in turn, in one loop, and prints their
ratios (e.g. a bundle that crops against the whole-photo one: issue 19's budget is 1.3x).

    python -m benchmarks.predict --bundle BUNDLE [--repeat 20] [--threads 1] [--int8] \
        [--against B2 ...]
"""

from __future__ import annotations

import argparse
from functools import partial
from pathlib import Path

import numpy as np

from benchmarks._common import median_ms, medians_in_turn
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
    ap.add_argument("--against", type=Path, action="append", default=[],
                    help="another bundle: full grades of both timed in turn, and the ratio")
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
    if args.against:
        compare([grader, *(Grader(b, threads=args.threads, int8=args.int8)
                           for b in args.against)], photos, args.repeat)


def compare(graders: list[Grader], photos: list[bytes], repeat: int) -> None:
    """Full grades of each bundle in turn (one loop), their medians and ratios to the first."""
    info = parse_device_info(INFO)
    ms = medians_in_turn([partial(g.grade, photos[0], photos[1], info, "good")
                          for g in graders], repeat)
    print(f"full grades in turn ({repeat} rounds):")
    for g, t in zip(graders, ms, strict=True):
        crop = g.manifest.crop
        what = f"crops {','.join(crop.views)} at {crop.long_side} px" if crop else "whole photos"
        print(f"  {g.dir!s:40s} {what:28s} {t:7.1f} ms  {t / ms[0]:.2f}x")


if __name__ == "__main__":
    main()
