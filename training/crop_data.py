"""A manifest's photos cut down to the device (issue 19, item 4): the condition model trained
and judged on the localiser's rectified crops instead of whole photos.

:func:`crop_manifest` writes, for every photo of a manifest, the crop
:func:`vision.crop.crop_device` makes (JPEG, quality 95) and a manifest with the same rows
pointing at the crops. A photo in which the localiser finds no device keeps its whole photo,
as a crop pipeline would grade it. ``crops.json`` beside the manifest counts both. Each row
keeps its photo's source (the ``source`` column, else the original file name up to its first
'-', as ``cv vision --by-source`` reads it), which the crop's file name no longer carries.
``with_whole`` also writes ``mixed.csv``: the original photos' rows, then the crops' with
:data:`training.manifest.CROP_SUFFIX` appended to their device ids, to train one model on both
(a crop when the localiser finds the device, the whole photo otherwise; the validation split
keeps a photo and its crop together). Torch-free: the localiser runs on ONNX Runtime, in
``workers`` processes.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from PIL import Image
from tqdm import tqdm

from training.manifest import CROP_SUFFIX, PHOTO_COLUMNS, SOURCE_COLUMN, name_source
from vision.conditions import VIEWS
from vision.crop import crop_device
from vision.localise import Localiser
from vision.preprocess import open_image_sized

_localiser: Localiser | None = None


def _init(model: str) -> None:
    global _localiser
    _localiser = Localiser(model, threads=1)


def crop_one(job: tuple[str, str, int]) -> bool:
    """Write the crop of photo ``src`` to ``dst`` (``long_side`` pixels); whether a device
    was found (else the whole photo is written, its longer side ``long_side``)."""
    src, dst, long_side = job
    assert _localiser is not None
    loc, crop = crop_device(Path(src), _localiser, long_side=long_side)
    if not loc.found:
        crop, _ = open_image_sized(Path(src), draft_size=long_side)
        crop.thumbnail((long_side, long_side), Image.Resampling.BILINEAR)
    crop.convert("RGB").save(dst, "JPEG", quality=95)
    return loc.found


def crop_manifest(manifest: str | Path, localiser: str | Path, out: str | Path, *,
                  long_side: int = 448, workers: int = 2, progress: bool = False,
                  with_whole: bool = False, views: Sequence[str] = VIEWS) -> dict[str, int]:
    """Crop the photos of ``views`` of every row of ``manifest`` into ``out``/images and write
    ``out``/manifest.csv (same rows and columns, photo paths relative to it; the other views'
    photos whole, as a bundle cropping only ``views`` grades them), ``out``/crops.json and,
    with ``with_whole``, ``out``/mixed.csv (whose crop rows carry the crops only); returns the
    counts (photos, found); ``progress``: a progress bar."""
    manifest, out = Path(manifest), Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    with manifest.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        columns, rows = list(reader.fieldnames or []), list(reader)
    if SOURCE_COLUMN not in columns:
        columns.append(SOURCE_COLUMN)
    cropped = [f"{v}_path" for v in views]
    whole = [_whole_row(row, manifest.parent, out) for row in rows]
    jobs, crops = [], []  # crops: each row's crop paths by column
    for i, row in enumerate(rows):
        paths = {}
        for col in cropped:
            if row.get(col):
                src = (manifest.parent / row[col]).resolve()
                name = f"{i:06d}_{col.removesuffix('_path')}.jpg"
                jobs.append((str(src), str(out / "images" / name), long_side))
                paths[col] = f"images/{name}"
        crops.append(paths)
    with ProcessPoolExecutor(workers, initializer=_init, initargs=(str(localiser),)) as pool:
        found = sum(tqdm(pool.map(crop_one, jobs, chunksize=16), total=len(jobs),
                         desc="cropping", unit="photo", disable=not progress))
    _write(out / "manifest.csv", columns,
           [{**w, **paths} for w, paths in zip(whole, crops, strict=True)])
    if with_whole:
        blank = {col: "" for col in PHOTO_COLUMNS if col in columns}
        _write(out / "mixed.csv", columns, whole + [
            {**w, **blank, **paths, "device_id": w["device_id"] + CROP_SUFFIX}
            for w, paths in zip(whole, crops, strict=True) if paths])
    counts = {"photos": len(jobs), "found": int(found)}
    (out / "crops.json").write_text(json.dumps({**counts, "source": str(manifest),
                                                "localiser": str(localiser),
                                                "long_side": long_side, "views": list(views)},
                                               indent=2) + "\n", encoding="utf-8")
    return counts


def _whole_row(row: dict[str, str], base: Path, out: Path) -> dict[str, str]:
    """``row`` with its photo paths relative to ``out`` and its source filled in."""
    whole = dict(row)
    for col in PHOTO_COLUMNS:
        if row.get(col):
            whole[col] = os.path.relpath((base / row[col]).resolve(), out.resolve())
    first = next((row[c] for c in PHOTO_COLUMNS if row.get(c)), "")
    whole[SOURCE_COLUMN] = row.get(SOURCE_COLUMN) or name_source(first)
    return whole


def _write(path: Path, columns: list[str], rows: list[dict[str, str]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, columns)
        writer.writeheader()
        writer.writerows(rows)
