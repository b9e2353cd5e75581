"""``photograde score`` throughput: one process against Ray Data with 1 and 2 CPUs, and what
re-scoring a million devices costs per added node.

N devices (default 256) of real-size synthetic photos (12 MP JPEGs, a few distinct ones
reused: decoding a 12 MP JPEG is most of the work) are scored by the bundle (default: the
shipped base model) four ways, each into a fresh output folder: in this process with one and
with two ONNX Runtime threads, and on a local Ray with 1 and 2 CPUs (one actor per CPU, one
thread each). Each time is ``score()`` from the first row to the last part written: Ray's own
start (``ray.init``) is not counted, its actors' start (each loads the bundle) is; the rate
after start-up is the marginal one against a run of 8 devices, which cancels it. Printed: a
Markdown table (seconds, photos/s all in and after start-up), the scaling ratio from 1 to 2
Ray CPUs (after start-up), and the projection: CPU-hours for 1 million devices at the
measured per-CPU rate (Ray, 1 CPU, after start-up), node-hours on
nodes of ``--node-cpus`` CPUs at the measured 1 -> 2 CPU efficiency, and the wall-clock time
with 1, 4 and 16 such nodes.

    nice python -m benchmarks.score [--devices 256] [--bundle models/photograde-base]
        [--node-cpus 16] [--photos 8]
"""

from __future__ import annotations

import argparse
import csv
import tempfile
from pathlib import Path
from typing import Any

from benchmarks._photos import phone_jpegs
from photograde.score import Engine, manifest_source, score
from serve.settings import SHIPPED_BUNDLE
from tabular.schema import CHECKS
from tests.support import INFO

MILLION = 1_000_000
SMALL = 8  # devices of the start-up run


def write_manifest(folder: Path, devices: int, photos: int) -> Path:
    """``devices`` rows over ``photos`` distinct 12 MP photos (fronts and backs alternate)."""
    paths = phone_jpegs(folder / "photos", max(2, photos))
    fronts, backs = paths[0::2], paths[1::2]
    path = folder / "manifest.csv"
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["device_id", "front_path", "back_path", "brand", "model", "storage_gb",
                    "unlocked", "battery_health_pct", *CHECKS, "refurbisher_grade"])
        for i in range(devices):
            w.writerow([f"d{i:07d}", fronts[i % len(fronts)], backs[i % len(backs)],
                        INFO["brand"], INFO["model"], INFO["storage_gb"], INFO["unlocked"],
                        INFO["battery_health_pct"], *(["true"] * len(CHECKS)), "good"])
    return path


def _timed(manifest: Path, out: Path, engine: Engine, use: str) -> tuple[int, float]:
    s = score(manifest_source([manifest]), out, engine, use=use, progress=False)
    assert s["errors"] == 0 and s["scored"] > 0, s
    return s["scored"], s["seconds"]


def run(name: str, manifests: tuple[Path, Path], out: Path, engine: Engine, use: str
        ) -> dict[str, Any]:
    """The full manifest's time, and the marginal rate: (N - n) / (T - t) against the small
    manifest's n devices in t seconds, which cancels the start-up (loading the bundle, Ray's
    actors)."""
    n, t = _timed(manifests[0], out / f"{name}-small", engine, use)
    big, seconds = _timed(manifests[1], out / name, engine, use)
    print(f"  {name}: {big} devices in {seconds:.1f} s ({n} in {t:.1f} s)", flush=True)
    return {"name": name, "devices": big, "seconds": seconds, "rate": big / seconds,
            "marginal": (big - n) / (seconds - t)}


def measure(bundle: Path, manifests: tuple[Path, Path], out: Path) -> list[dict[str, Any]]:
    import ray

    rows = [run(f"single process, {t} thread(s)", manifests, out, Engine(bundle, threads=t),
                "single") for t in (1, 2)]
    for cpus in (1, 2):
        ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
        try:
            rows.append(run(f"Ray Data, {cpus} CPU(s)", manifests, out,
                            Engine(bundle, num_cpus=cpus), "ray"))
        finally:
            ray.shutdown()
    return rows


def report(rows: list[dict[str, Any]], node_cpus: int) -> None:
    print("\n| configuration | devices | seconds | photos/s | photos/s after start-up |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['name']} | {r['devices']} | {r['seconds']:.1f} | {2 * r['rate']:.2f} | "
              f"{2 * r['marginal']:.2f} |")
    one, two = rows[2]["marginal"], rows[3]["marginal"]
    ratio = two / one
    efficiency = min(1.0, ratio / 2)
    cpu_hours = MILLION / one / 3600
    node_hours = cpu_hours / (node_cpus * efficiency)
    print(f"\nscaling 1 -> 2 Ray CPUs: x{ratio:.2f} (efficiency {efficiency:.0%})")
    print(f"1 million devices: {cpu_hours:.1f} CPU-hours at {one:.2f} devices/s per CPU; "
          f"{node_hours:.2f} node-hours on {node_cpus}-CPU nodes at {efficiency:.0%} "
          "efficiency, whatever the number of nodes: each added node divides the wall clock")
    for nodes in (1, 4, 16):
        print(f"  {nodes:2d} node(s): {node_hours / nodes:.2f} h wall clock")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", type=Path, default=SHIPPED_BUNDLE)
    ap.add_argument("--devices", type=int, default=256)
    ap.add_argument("--photos", type=int, default=8, help="distinct photos (default 8)")
    ap.add_argument("--node-cpus", type=int, default=16)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        small = write_manifest(Path(tmp) / "small", SMALL, args.photos)
        full = write_manifest(Path(tmp) / "full", args.devices, args.photos)
        print(f"{args.devices} devices (2 x 12 MP JPEG each), bundle {args.bundle}", flush=True)
        rows = measure(args.bundle, (small, full), Path(tmp) / "out")
    report(rows, args.node_cpus)


if __name__ == "__main__":
    main()
