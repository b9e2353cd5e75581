"""``photograde synth``: front/back photo pairs plus a manifest, deterministic for a seed."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from tqdm import tqdm

from fusion.policy import GradingPolicy, load_policy
from training.manifest import write_manifest
from training.synth.devices import MIXES, sample_device, sample_refurbishers
from training.synth.phone import PhoneLook, render_back, render_front
from training.synth.scene import encode_jpeg, photograph
from vision.errors import PhotogradeError

#: The reference day for ``listed_at``, fixed so that a seed always gives the same manifest.
REFERENCE_DAY = dt.date(2026, 11, 1)


class SynthError(PhotogradeError):
    """Synthetic-data options out of range."""


def _photo_size(rng: np.random.Generator, size: int) -> tuple[int, int]:
    """Output (width, height): mostly portrait 3:4 like a phone camera, sometimes 4:3 or 1:1."""
    ratio = rng.choice([0.75, 1.0, 4 / 3, 16 / 9], p=[0.55, 0.1, 0.25, 0.1])
    return (int(size * ratio), size) if ratio <= 1 else (size, int(size / ratio))


def render_device(seed: int, index: int, row: dict, size: int) -> tuple[bytes, bytes]:
    """JPEG bytes of the front and back photos of one device (pure function of its inputs)."""
    rng = np.random.default_rng([seed, index, 1])
    # drawn at about the size the phone will have in the scene's working resolution
    look = PhoneLook.sample(rng, height=int(size * 0.45 * rng.uniform(0.8, 1.0)))
    photos = []
    for render, cond in ((render_front, row["screen_condition"]),
                         (render_back, row["shell_condition"])):
        part, alpha = render(rng, look, cond)
        rgb = photograph(rng, part, alpha, _photo_size(rng, size))
        photos.append(encode_jpeg(rgb, rng))
    return photos[0], photos[1]


def sample_rows(n: int, seed: int, policy: GradingPolicy, mix: str = "training") -> list[dict]:
    """The manifest rows (labels, facts, workflow) of ``n`` devices, drawn with the conditions
    of ``mix`` (training/synth/devices.py MIXES)."""
    rng = np.random.default_rng([seed, 0])
    refurbishers = sample_refurbishers(rng, max(3, min(12, n // 40 + 3)))
    return [sample_device(np.random.default_rng([seed, i, 0]), i, policy, refurbishers,
                          REFERENCE_DAY, MIXES[mix]) for i in range(n)]


def _job(args: tuple[int, int, dict, int, str]) -> tuple[int, dict]:
    seed, i, row, size, out = args
    front, back = render_device(seed, i, row, size)
    row = dict(row)
    for view, data in (("front", front), ("back", back)):
        rel = f"images/{row['device_id']}_{view}.jpg"
        (Path(out) / rel).write_bytes(data)
        row[f"{view}_path"] = rel
    return i, row


def generate(n: int, out: str | Path, seed: int = 0, size: int = 1500,
             policy: GradingPolicy | None = None, workers: int = 1,
             progress: bool = True, mix: str = "training") -> Path:
    """Write ``n`` devices (two JPEGs each) and ``manifest.csv`` under ``out`` (``mix``:
    ``training``, every condition often; ``marketplace``, a realistic listing mix)."""
    if n < 1:
        raise SynthError("--devices must be at least 1")
    if size < 64:
        raise SynthError("--size must be at least 64 pixels")
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    policy = policy or load_policy()
    rows = sample_rows(n, seed, policy, mix)
    jobs = [(seed, i, row, size, str(out)) for i, row in enumerate(rows)]
    done: list[dict] = [{}] * n
    results: Iterator[tuple[int, dict]]
    if workers > 1:
        pool = ProcessPoolExecutor(workers)
        results = pool.map(_job, jobs, chunksize=4)
    else:
        pool, results = None, map(_job, jobs)
    try:
        for i, row in tqdm(results, total=n, desc="synth", unit="device", disable=not progress):
            done[i] = row
    finally:
        if pool:
            pool.shutdown()
    return write_manifest(out / "manifest.csv", done)


def default_workers() -> int:
    return max(1, min(8, len(os.sched_getaffinity(0))))
