"""``photograde synth``: front/back photo pairs plus a manifest, deterministic for a seed."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from fusion.policy import GradingPolicy, load_policy
from training.annotations import sidecar_path, write_coco
from training.manifest import write_manifest
from training.synth.devices import MIXES, sample_device, sample_refurbishers
from training.synth.phone import PhoneLook, Render, render_back, render_front
from training.synth.scene import compose, encode_jpeg
from vision.errors import PhotogradeError
from vision.geometry import DeviceGeometry, Quad

#: The reference day for ``listed_at``, fixed so that a seed always gives the same manifest.
REFERENCE_DAY = dt.date(2026, 11, 1)


class SynthError(PhotogradeError):
    """Synthetic-data options out of range."""


def _photo_size(rng: np.random.Generator, size: int) -> tuple[int, int]:
    """Output (width, height): mostly portrait 3:4 like a phone camera, sometimes 4:3 or 1:1."""
    ratio = rng.choice([0.75, 1.0, 4 / 3, 16 / 9], p=[0.55, 0.1, 0.25, 0.1])
    return (int(size * ratio), size) if ratio <= 1 else (size, int(size / ratio))


def _box_corners(box: tuple[float, float, float, float]) -> np.ndarray:
    x0, y0, x1, y1 = box
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float64)


def photo_geometry(homography: np.ndarray, render: Render, size: tuple[int, int],
                   view: str) -> DeviceGeometry:
    """The outline and glass region of ``render`` in the photo of ``size`` (w, h) that
    ``homography`` (render -> photo, continuous pixel coordinates) placed it in."""
    h, w = render.alpha.shape

    def quad(box: tuple[float, float, float, float]) -> Quad:
        pts = cv2.perspectiveTransform(_box_corners(box)[None], homography)[0]
        return Quad.from_points(pts, *size)

    glass = quad(render.glass)
    return DeviceGeometry(width=size[0], height=size[1], device=quad((0, 0, w, h)),
                          screen=glass if view == "front" else None,
                          camera=glass if view == "back" else None)


def render_device_geometry(seed: int, index: int, row: dict, size: int
                           ) -> list[tuple[bytes, DeviceGeometry]]:
    """The front and back photos of one device as JPEG bytes, each with its geometry (pure
    function of its inputs)."""
    rng = np.random.default_rng([seed, index, 1])
    # drawn at about the size the phone will have in the scene's working resolution
    look = PhoneLook.sample(rng, height=int(size * 0.45 * rng.uniform(0.8, 1.0)))
    photos = []
    for view, render, cond in (("front", render_front, row["screen_condition"]),
                               ("back", render_back, row["shell_condition"])):
        part = render(rng, look, cond)
        photo_size = _photo_size(rng, size)
        rgb, homography = compose(rng, part.rgb, part.alpha, photo_size)
        photos.append((encode_jpeg(rgb, rng), photo_geometry(homography, part, photo_size, view)))
    return photos


def render_device(seed: int, index: int, row: dict, size: int) -> tuple[bytes, bytes]:
    """JPEG bytes of the front and back photos of one device (pure function of its inputs)."""
    (front, _), (back, _) = render_device_geometry(seed, index, row, size)
    return front, back


def sample_rows(n: int, seed: int, policy: GradingPolicy, mix: str = "training") -> list[dict]:
    """The manifest rows (labels, facts, workflow) of ``n`` devices, drawn with the conditions
    of ``mix`` (training/synth/devices.py MIXES)."""
    rng = np.random.default_rng([seed, 0])
    refurbishers = sample_refurbishers(rng, max(3, min(12, n // 40 + 3)))
    return [sample_device(np.random.default_rng([seed, i, 0]), i, policy, refurbishers,
                          REFERENCE_DAY, MIXES[mix]) for i in range(n)]


def _job(args: tuple[int, int, dict, int, str]) -> tuple[int, dict, list]:
    seed, i, row, size, out = args
    photos = render_device_geometry(seed, i, row, size)
    row, geometry = dict(row), []
    for view, (data, g) in zip(("front", "back"), photos, strict=True):
        rel = f"images/{row['device_id']}_{view}.jpg"
        (Path(out) / rel).write_bytes(data)
        row[f"{view}_path"] = rel
        geometry.append((rel, g))
    return i, row, geometry


def generate(n: int, out: str | Path, seed: int = 0, size: int = 1500,
             policy: GradingPolicy | None = None, workers: int = 1,
             progress: bool = True, mix: str = "training") -> Path:
    """Write ``n`` devices (two JPEGs each), ``manifest.csv`` and its geometry sidecar
    ``manifest.annotations.json`` (:mod:`training.annotations`) under ``out`` (``mix``:
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
    geometry: list[list] = [[]] * n
    results: Iterator[tuple[int, dict, list]]
    if workers > 1:
        pool = ProcessPoolExecutor(workers)
        results = pool.map(_job, jobs, chunksize=4)
    else:
        pool, results = None, map(_job, jobs)
    try:
        for i, row, geo in tqdm(results, total=n, desc="synth", unit="device",
                                disable=not progress):
            done[i], geometry[i] = row, geo
    finally:
        if pool:
            pool.shutdown()
    write_coco(sidecar_path(out / "manifest.csv"), (e for geo in geometry for e in geo))
    return write_manifest(out / "manifest.csv", done)


def default_workers() -> int:
    return max(1, min(8, len(os.sched_getaffinity(0))))
