"""Soak: the service at a steady load for several minutes; errors and memory growth.

Drives ``/v1/grade`` with ``--clients`` concurrent clients for ``--minutes`` and samples the
server's resident memory every 10 s. Prints the request count, errors, and RSS growth from the
end of the first minute (after warm-up) to the end (target: zero errors, growth < 10%).

    python -m benchmarks.soak --bundle BUNDLE [--minutes 5] [--clients 8]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path

import httpx

from benchmarks._photos import upload_bytes
from benchmarks._server import service_process
from tests.support import INFO, ServerProcess


async def soak(svc: ServerProcess, photos: list[bytes], clients: int, seconds: float):
    files = {"front": ("front.jpg", photos[0], "image/jpeg"),
             "back": ("back.jpg", photos[1], "image/jpeg")}
    data = {"device": json.dumps(INFO), "refurbisher_grade": "good"}
    done = errors = 0
    statuses: dict[int, int] = {}
    rss: list[tuple[float, float]] = []
    start = time.perf_counter()
    stop = start + seconds

    async def client(c: httpx.AsyncClient) -> None:
        nonlocal done, errors
        while time.perf_counter() < stop:
            r = await c.post(svc.url + "/v1/grade", files=files, data=data)
            done += 1
            if r.status_code != 200:
                errors += 1
                statuses[r.status_code] = statuses.get(r.status_code, 0) + 1

    async def sampler() -> None:
        while time.perf_counter() < stop:
            rss.append((time.perf_counter() - start, svc.rss_mb()))
            await asyncio.sleep(10)
        rss.append((time.perf_counter() - start, svc.rss_mb()))

    async with httpx.AsyncClient(timeout=120) as c:
        await asyncio.gather(sampler(), *(client(c) for _ in range(clients)))
    return done, errors, statuses, rss


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", type=Path, required=True)
    ap.add_argument("--minutes", type=float, default=5)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--size", default="3000x4000")
    args = ap.parse_args()
    photos = upload_bytes(2, args.size)
    with service_process(args.bundle) as svc:
        done, errors, statuses, rss = asyncio.run(
            soak(svc, photos, args.clients, args.minutes * 60))
    base = next((m for t, m in rss if t >= 60), rss[0][1])
    end = rss[-1][1]
    print(f"{args.minutes:g} min at {args.clients} clients: {done} requests "
          f"({done / (args.minutes * 60):.2f}/s), {errors} errors {statuses or ''}")
    print(f"RSS after 1 min {base:.0f} MB, at the end {end:.0f} MB: growth "
          f"{100 * (end - base) / base:.1f}% (target < 10%)")
    print("RSS samples (s, MB): " + ", ".join(f"{t:.0f}:{m:.0f}" for t, m in rss))


if __name__ == "__main__":
    main()
