"""``photograde import-folder``: a folder of labelled images (one sub-folder per label) to a
single-view manifest, with a label mapping such as ``intact=flawless|light_scratches|...``,
optionally a ``source`` column read from the file names (``<source>-<hash>.jpg``), and
optionally the photos' device geometry from a COCO keypoints file (``--annotations``), written
as the manifest's sidecar (:mod:`training.annotations`)."""

from __future__ import annotations

import os
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from training.annotations import AnnotationError, read_coco, sidecar_path, write_coco
from training.manifest import SOURCE_COLUMN, write_manifest
from vision.conditions import CONDITIONS, PART_VIEW, format_condition_set, parse_condition_set
from vision.errors import PhotogradeError
from vision.geometry import DeviceGeometry
from vision.preprocess import register_heif

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


def upright_size(path: Path) -> tuple[int, int]:
    """(width, height) of an image as shown upright (its EXIF orientation applied)."""
    register_heif()
    try:
        with Image.open(path) as im:
            w, h = im.size
            orientation = im.getexif().get(0x0112, 1)
    except (OSError, UnidentifiedImageError) as e:
        raise AnnotationError(f"{path}: cannot read the image to check its annotations ({e})"
                              ) from None
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)


def match_annotations(coco: str | Path, src: Path, files: list[Path]
                      ) -> dict[Path, DeviceGeometry]:
    """The geometry of ``files`` (images under ``src``) from a COCO file whose ``file_name``
    values are paths relative to ``src`` or bare file names; every annotated image must be one
    of ``files``, with the upright size the annotations were drawn on."""
    by_rel = {f.relative_to(src).as_posix(): f for f in files}
    by_name: dict[str, list[Path]] = {}
    for f in files:
        by_name.setdefault(f.name, []).append(f)
    out = {}
    for name, g in read_coco(coco).items():
        found = by_rel.get(Path(name).as_posix().removeprefix("./"))
        if found is None:
            same = by_name.get(Path(name).name, [])
            if len(same) > 1:
                raise AnnotationError(f"{coco}: image {name!r} matches {len(same)} photos under "
                                      f"{src}; name it by its path relative to that folder")
            if not same:
                raise AnnotationError(f"{coco}: image {name!r} is not among the imported "
                                      f"photos under {src}")
            found = same[0]
        size = upright_size(found)
        if size != (g.width, g.height):
            raise AnnotationError(f"{coco}: image {name!r} is {g.width}x{g.height} in the "
                                  f"annotations but {size[0]}x{size[1]} upright (corners are "
                                  "in the image as shown, after its EXIF orientation)")
        out[found] = g
    return out


def import_folder(src: str | Path, out: str | Path, mapping: dict[str, str] | None = None,
                  part: str = "screen", source_from_names: bool = False,
                  annotations: str | Path | None = None) -> tuple[Path, dict[str, int]]:
    """Write a manifest listing every image under ``src/<label>/``; returns it and the counts.

    Sub-folders not in ``mapping`` must be named after a condition of ``part``. With
    ``source_from_names``, a ``source`` column holds each file name's :func:`source_from_name`.
    With ``annotations`` (a COCO keypoints file, :func:`match_annotations`), the manifest gets a
    geometry sidecar for the photos it annotates.
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
    rows, counts, photos = [], {}, []
    for folder in folders:
        label = mapping.get(folder.name, folder.name)
        files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        counts[folder.name] = len(files)
        photos += files
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
    geometry = match_annotations(annotations, src, photos) if annotations is not None else {}
    path = write_manifest(out, rows, columns)
    sidecar_path(out).unlink(missing_ok=True)  # a former import's, which may not fit
    if geometry:
        write_coco(sidecar_path(out), [(Path(os.path.relpath(f, out.parent)).as_posix(), g)
                                       for f, g in geometry.items()])
    return path, counts
