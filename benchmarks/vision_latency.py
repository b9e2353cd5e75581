"""Raw ONNX Runtime latency of vision runs at their own input sizes, measured in one run.

Each run is exported to ONNX (as ``photograde export`` does) and timed on one thread with a
front and a back photo in one call (the service's unit of work); prints the median ms per call
and each run's ratio to the first one.

    python -m benchmarks.vision_latency RUN_DIR [RUN_DIR ...] [--threads 1] [--repeat 30]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from training.export import _latency_ms, export_onnx, session
from training.vision_run import load_run


def median_ms(run: str | Path, tmp: Path, threads: int, repeat: int) -> tuple[int, float]:
    """(input size, median ms of one call on a front + back batch) of a vision run."""
    model, config, _ = load_run(run)
    path = tmp / f"{Path(run).name}.onnx"
    export_onnx(model, path)
    size = config["img_size"]
    x = np.random.default_rng(0).standard_normal((2, 3, size, size)).astype(np.float32)
    return size, _latency_ms(session(path, threads=threads), x, repeat)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="vision run directories (train vision --out)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=30)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows = [(run, *median_ms(run, Path(tmp), args.threads, args.repeat))
                for run in args.runs]
    first = rows[0][2]
    print(f"| run | px | ms per call ({args.threads} thread(s), front + back) | ratio |")
    print("|---|---:|---:|---:|")
    for run, size, ms in rows:
        print(f"| {run} | {size} | {ms:.1f} | {ms / first:.2f} |")


if __name__ == "__main__":
    main()
