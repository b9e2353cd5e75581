"""Decode and resize each photo once: a disk cache keyed by file content and input size."""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from tqdm import tqdm

from vision.preprocess import PreprocessConfig, load_rgb_resized

#: Bump when decoding or resizing changes, so that stale entries are not reused.
CACHE_VERSION = 1


def default_cache_dir() -> Path:
    env = os.environ.get("PHOTOGRADE_CACHE")
    base = Path(env) if env else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return (base if env else base / "photograde") / "images"


def _key(path: Path, img_size: int) -> str:
    digest = hashlib.sha1(path.read_bytes(), usedforsecurity=False).hexdigest()[:24]
    return f"{digest}-{img_size}-v{CACHE_VERSION}"


def _load_one(args: tuple[str, int, str]) -> np.ndarray:
    path, img_size, root = Path(args[0]), args[1], Path(args[2])
    entry = root / f"{_key(path, img_size)}.npy"
    if entry.is_file():
        try:
            arr = np.load(entry)
            if arr.shape == (img_size, img_size, 3) and arr.dtype == np.uint8:
                return arr
        except (OSError, ValueError):
            pass  # a broken entry is simply rebuilt
    arr = load_rgb_resized(path, PreprocessConfig(img_size=img_size))
    tmp = entry.with_suffix(f".{os.getpid()}.tmp.npy")
    np.save(tmp, arr)
    os.replace(tmp, entry)  # atomic: concurrent readers never see half a file
    return arr


def load_images(paths: list[Path], img_size: int, cache_dir: str | Path | None = None,
                workers: int = 1, progress: bool = True) -> np.ndarray:
    """uint8 array (N, S, S, 3) of the photos, decoded (JPEG draft) and resized once.

    Entries are keyed by the file's content, so a renamed photo is not decoded again and an
    edited one is.
    """
    root = Path(cache_dir) if cache_dir else default_cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    out = np.empty((len(paths), img_size, img_size, 3), np.uint8)
    jobs = [(str(p), img_size, str(root)) for p in paths]
    bar = tqdm(total=len(jobs), desc="images", unit="img", disable=not progress, leave=False)
    if workers > 1 and len(jobs) > 32:
        with ProcessPoolExecutor(workers) as pool:
            for i, arr in enumerate(pool.map(_load_one, jobs, chunksize=16)):
                out[i] = arr
                bar.update()
    else:
        for i, job in enumerate(jobs):
            out[i] = _load_one(job)
            bar.update()
    bar.close()
    return out
