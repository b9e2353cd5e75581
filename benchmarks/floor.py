"""One grade against the hardware's floor on this machine, and the service against both.

In one run, for the bundle's fp32 and int8 vision models at 1 and 2 threads (the process
pinned to as many cores):

- **floor**: both photos (two 12-MP JPEGs) decoded at once, one thread each up to the
  thread count, by the fastest decoder installed (the project's Pillow draft decoding, OpenCV's
  and simplejpeg's DCT-scaled decoding), plus raw ONNX Runtime on the decoded tensors (the
  vision model and the photo-check model, and for a bundle that crops, the localiser on its
  input of the cropped photos);
- **full grade**: the service's grade in-process (decode pool with the photo check's
  measurements, localisation and crop when the bundle crops, photo-check model, vision,
  fusion, return risk, decision), no HTTP;
- their ratio (target <= 1.15): the floor and the full grade are sampled alternately in one
  loop (their medians), so that a drift of the machine's speed during the run affects both
  alike; the decode and inference columns are the floor's parts, timed apart.

Then the real service over HTTP (default settings, the precision ``auto`` picks): p50 at one
client against the in-process grade, one of each in turn (target <= 1.1x); the upload alone
(the same body posted to an app that only reads it, on the same uvicorn: the part of the HTTP
path no application code can save); and throughput at 16 clients with ONNX Runtime's idle
threads spinning (the old default) and sleeping (the new; target >= 1.25x).

    python -m benchmarks.floor [--bundle models/photograde-base] [--repeat 20] [--no-http]
                               [--no-floor]
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from benchmarks._floor import paired_http_ms, paired_ms, pinned, upload_ms
from benchmarks._photos import upload_bytes
from benchmarks._server import service_process, sink_process
from benchmarks._sink import SocketSink
from benchmarks.serve_load import load
from serve.runtime import Grader
from serve.settings import SHIPPED_BUNDLE, Settings
from tabular.schema import parse_device_info
from tests.support import INFO


def floor_table(bundle: Path, photos: list[bytes], repeat: int) -> None:
    info = parse_device_info(INFO)
    print("| precision | threads | floor ms | fastest decoder (both photos) | raw inference ms "
          "| full grade ms | full / floor |")
    print("|---|---:|---:|---|---:|---:|---:|")
    for precision in ("fp32", "int8"):
        for threads in (1, 2):
            with pinned(threads):
                s = Settings(bundle=bundle, threads=threads, decode_threads=threads,
                             precision=precision)
                p = paired_ms(s, photos, info, threads, repeat)
            print(f"| {precision} | {threads} | {p.floor:.1f} | {p.decoder} {p.decode:.1f} ms | "
                  f"{p.infer:.1f} | {p.full:.1f} | {p.full / p.floor:.2f} |", flush=True)


def http_lines(bundle: Path, photos: list[bytes], repeat: int) -> None:
    info = parse_device_info(INFO)
    rps = {}
    for spinning in (False, True):
        with service_process(bundle, ort_spinning=str(spinning).lower()) as svc:
            if not spinning:
                inproc, p50 = paired_http_ms(Settings(bundle=bundle), svc.url, photos, info,
                                             repeat)
                print(f"service p50 at 1 client: {p50:.1f} ms vs in-process grade "
                      f"{inproc:.1f} ms: {p50 / inproc:.2f}x (target <= 1.1)", flush=True)
            rps[spinning], _, errors = asyncio.run(load(svc.url, photos, 16, 3 * repeat))
            print(f"16 clients, ONNX Runtime threads {'spinning' if spinning else 'sleeping'}: "
                  f"{rps[spinning]:.1f} requests/s ({errors} errors)", flush=True)
    with sink_process() as sink:
        upload = upload_ms(sink.url, photos, repeat)
    with SocketSink() as plain:
        bare = upload_ms(plain.url, photos, repeat)
    print(f"the upload alone (the same body to an app that only reads it, same uvicorn): "
          f"{upload:.1f} ms = {upload / inproc:.2f}x of the in-process grade (to a plain "
          f"socket: {bare:.1f} ms); the service's own HTTP path: {p50 - inproc - upload:.1f} ms")
    print(f"thread fix (sleeping / spinning) at 16 clients: {rps[False] / rps[True]:.2f}x "
          "(target >= 1.25)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", type=Path, default=SHIPPED_BUNDLE)
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--no-http", action="store_true", help="skip the service over HTTP")
    ap.add_argument("--no-floor", action="store_true", help="skip the floor table")
    args = ap.parse_args()
    photos = upload_bytes(2)
    g = Grader(args.bundle, precision=Settings.model_fields["precision"].default)
    print(f"bundle {g.manifest.bundle_version}, {g.pre.img_size} px, {g.provider}; "
          f"auto precision: {g.precision.precision} ({g.precision.reason})")
    if not args.no_floor:
        floor_table(args.bundle, photos, args.repeat)
    if not args.no_http:
        http_lines(args.bundle, photos, args.repeat)


if __name__ == "__main__":
    main()
