"""``photograde import-folder``: a folder of labelled images (one sub-folder per label) to a
single-view manifest, with a label mapping such as ``intact=flawless|light_scratches|...``,
and optionally a ``source`` column read from the file names (``<source>-<hash>.jpg``)."""

from __future__ import annotations

import os
from pathlib import Path

from training.manifest import SOURCE_COLUMN, write_manifest
from vision.conditions import CONDITIONS, PART_VIEW, format_condition_set, parse_condition_set
from vision.errors import PhotogradeError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".heic", ".heif", ".bmp", ".tif", ".tiff"}


class ImportFolderError(PhotogradeError):
    """The folder or the label mapping cannot be imported."""


def parse_mapping(items: list[str], part: str) -> dict[str, str]:
    """``["intact=flawless|light_scratches", "cracked=cracked"]`` -> folder -> condition cell."""
    out = {}
    for item in items:
        folder, sep, labels = item.partition("=")
        if not sep or not folder.strip():
            raise ImportFolderError(f"bad mapping {item!r}: expected FOLDER=LABEL[|LABEL...]")
        allowed = parse_condition_set(labels, part)
        if allowed is None:
            raise ImportFolderError(f"bad mapping {item!r}: no label after '='")
        out[folder.strip()] = format_condition_set(allowed, part)
    return out


def source_from_name(path: Path) -> str:
    """A file name's stem up to its first ``-`` (empty when it has none)."""
    source, sep, _ = path.stem.partition("-")
    return source if sep else ""


def import_folder(src: str | Path, out: str | Path, mapping: dict[str, str] | None = None,
                  part: str = "screen", source_from_names: bool = False
                  ) -> tuple[Path, dict[str, int]]:
    """Write a manifest listing every image under ``src/<label>/``; returns it and the counts.

    Sub-folders not in ``mapping`` must be named after a condition of ``part``. With
    ``source_from_names``, a ``source`` column holds each file name's :func:`source_from_name`.
    """
    src, out = Path(src).resolve(), Path(out).resolve()
    if not src.is_dir():
        raise ImportFolderError(f"{src}: not a folder")
    if part not in CONDITIONS:
        raise ImportFolderError(f"unknown part {part!r}; expected one of {', '.join(CONDITIONS)}")
    mapping = mapping or {}
    folders = sorted(p for p in src.iterdir() if p.is_dir())
    if not folders:
        raise ImportFolderError(f"{src}: no sub-folders (expected one sub-folder per label)")
    unknown = [f.name for f in folders if f.name not in mapping and f.name not in CONDITIONS[part]]
    if unknown:
        raise ImportFolderError(
            f"sub-folder(s) {', '.join(unknown)} are not {part} conditions "
            f"({', '.join(CONDITIONS[part])}); map them, e.g. --map {unknown[0]}=flawless")
    missing = sorted(set(mapping) - {f.name for f in folders})
    if missing:
        raise ImportFolderError(f"--map names folder(s) not found under {src}: "
                                f"{', '.join(missing)}")
    view, column = PART_VIEW[part], f"{part}_condition"
    rows, counts = [], {}
    for folder in folders:
        label = mapping.get(folder.name, folder.name)
        files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        counts[folder.name] = len(files)
        for f in files:
            rel = f.relative_to(src)
            rows.append({
                "device_id": "/".join(rel.with_suffix("").parts),
                f"{view}_path": Path(os.path.relpath(f, out.parent)).as_posix(),
                column: label,
                **({SOURCE_COLUMN: source_from_name(f)} if source_from_names else {}),
            })
    if not rows:
        raise ImportFolderError(f"{src}: no images found ({', '.join(sorted(IMAGE_SUFFIXES))})")
    columns: tuple[str, ...] = ("device_id", f"{view}_path", column)
    if source_from_names:
        columns += (SOURCE_COLUMN,)
    return write_manifest(out, rows, columns), counts
