"""Load on the real service over loopback: throughput and latency percentiles.

For 1, 4 and 16 concurrent clients, with dynamic batching on and off, each client posts
``/v1/grade`` requests (two real-size phone JPEGs + the checklist) back to back for a fixed
number of requests. Prints a markdown table (requests/s, p50/p95/p99 ms), the throughput ratio
batching on / off at the highest concurrency (target >= 1.5x), the inference time per photo by
batch size (what batching can save), and the ratio of the service's p50 at one client to the
torch-free predict path on the same photos, in-process with the same threads (target <= 1.3x).
The load generator runs on the same machine as the service: its CPU use is included.

    python -m benchmarks.serve_load --bundle BUNDLE [--requests 48] [--size 3000x4000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from functools import partial
from pathlib import Path

import httpx
import numpy as np

from benchmarks._common import median_ms
from benchmarks._photos import upload_bytes
from benchmarks._server import service_process
from serve.runtime import Grader
from serve.settings import Settings
from tabular.schema import parse_device_info
from tests.support import INFO


def grade_request(photos: list[bytes]) -> tuple[bytes, dict[str, str]]:
    """The multipart ``/v1/grade`` body and its content type, encoded once: the clients share
    the machine with the service, so they send these bytes instead of re-encoding 2 photos
    per request (the server receives exactly what a normal client sends)."""
    req = httpx.Request("POST", "http://x/v1/grade", data={"device": json.dumps(INFO),
                                                           "refurbisher_grade": "good"},
                        files={"front": ("front.jpg", photos[0], "image/jpeg"),
                               "back": ("back.jpg", photos[1], "image/jpeg")})
    return req.read(), {"content-type": req.headers["content-type"]}


async def load(url: str, photos: list[bytes], clients: int, requests: int
               ) -> tuple[float, list[float], int]:
    """(requests/s, latencies in s, errors) for ``requests`` spread over ``clients``."""
    latencies: list[float] = []
    errors = 0
    body, headers = grade_request(photos)
    counter = iter(range(requests))

    async def client(c: httpx.AsyncClient) -> None:
        nonlocal errors
        for _ in counter:
            t0 = time.perf_counter()
            r = await c.post(url + "/v1/grade", content=body, headers=headers)
            latencies.append(time.perf_counter() - t0)
            errors += r.status_code != 200

    async with httpx.AsyncClient(timeout=120, limits=httpx.Limits(
            max_connections=clients)) as c:
        await c.post(url + "/v1/grade", content=body, headers=headers)  # warm the connection
        t0 = time.perf_counter()
        await asyncio.gather(*(client(c) for _ in range(clients)))
        elapsed = time.perf_counter() - t0
    return requests / elapsed, latencies, errors


def in_process(bundle: Path, photos: list[bytes]) -> tuple[float, dict[int, float], str, int]:
    """The torch-free predict path with the service's default threads and precision: its
    median ms per device, the inference ms per photo by batch size, the provider and the
    threads."""
    grader = Grader(bundle, precision=Settings.model_fields["precision"].default)
    info = parse_device_info(INFO)
    direct = median_ms(lambda: grader.grade(photos[0], photos[1], info, "good"), 15)
    x = grader.decode(photos[0]).x
    per_photo = {}
    for n in (1, 2, 4, 8, 16):
        batch = np.stack([x] * n)
        per_photo[n] = median_ms(partial(grader.run_vision, batch), max(3, 32 // n)) / n
    return direct, per_photo, grader.provider, grader.threads


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q) * 1000)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", type=Path, required=True)
    ap.add_argument("--requests", type=int, default=48, help="per concurrency level")
    ap.add_argument("--size", default="3000x4000", help="photo size, WxH")
    ap.add_argument("--clients", default="1,4,16")
    args = ap.parse_args()
    photos = upload_bytes(2, args.size)
    levels = [int(c) for c in args.clients.split(",")]

    direct, per_photo, provider, threads = in_process(args.bundle, photos)

    rows, tput = [], {}
    for batching in (True, False):
        with service_process(args.bundle, batching=str(batching).lower()) as svc:
            for clients in levels:
                rps, lat, errors = asyncio.run(load(svc.url, photos, clients, args.requests))
                tput[(batching, clients)] = rps
                rows.append((batching, clients, rps, pct(lat, 50), pct(lat, 95), pct(lat, 99),
                             errors))
    print(f"photos {args.size} ({len(photos[0]) / 1e6:.1f} MB and {len(photos[1]) / 1e6:.1f} MB), "
          f"{args.requests} requests per level")
    print("| batching | clients | requests/s | p50 ms | p95 ms | p99 ms | errors |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for b, c, rps, p50, p95, p99, e in rows:
        print(f"| {'on' if b else 'off'} | {c} | {rps:.2f} | {p50:.0f} | {p95:.0f} | {p99:.0f} "
              f"| {e} |")
    top = max(levels)
    print(f"throughput at {top} clients, batching on / off: "
          f"{tput[(True, top)] / tput[(False, top)]:.2f}x (target >= 1.5x)")
    print(f"inference per photo by batch size ({provider}, {threads} thread(s)): " +
          ", ".join(f"{n}: {ms:.1f} ms" for n, ms in per_photo.items()))
    if 1 in levels:
        for b in (False, True):
            p50 = next(r[3] for r in rows if r[0] == b and r[1] == 1)
            default = " (the default on CPU)" if not b else ""
            print(f"p50 at 1 client, batching {'on' if b else 'off'}{default}: {p50:.0f} ms vs "
                  f"torch-free predict path {direct:.0f} ms: {p50 / direct:.2f}x "
                  f"(target <= 1.3x)")

if __name__ == "__main__":
    main()
