"""Device geometry of a manifest's photos in COCO keypoints JSON (the detection ecosystem's
layout: CVAT, Label Studio, pycocotools and torchvision read it).

A manifest's sidecar is ``<manifest stem>.annotations.json`` next to it (``manifest.csv`` ->
``manifest.annotations.json``); its ``file_name`` values are the photo paths as the manifest
writes them (relative to the manifest's folder). Categories: ``phone`` (the device outline),
``screen`` (a front's display), ``camera`` (a back's camera module); each annotation has the
4 corners as ``keypoints`` ``[x, y, v] * 4`` (``v`` 2: in the image, 1: outside it), the
polygon as ``segmentation``, its clipped bounding box as ``bbox`` and its area as ``area``.
Coordinates: :mod:`vision.geometry`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from vision.errors import PhotogradeError
from vision.geometry import CORNERS, DeviceGeometry, Quad

#: COCO category name -> :class:`DeviceGeometry` field, in category id order (1, 2, 3).
CATEGORIES: dict[str, str] = {"phone": "device", "screen": "screen", "camera": "camera"}
_SKELETON = [[1, 2], [2, 3], [3, 4], [4, 1]]


class AnnotationError(PhotogradeError):
    """A COCO geometry file that cannot be read or does not fit its photos."""


def sidecar_path(manifest: str | Path) -> Path:
    """Where a manifest's geometry sidecar lives."""
    manifest = Path(manifest)
    return manifest.with_name(f"{manifest.stem}.annotations.json")


def _annotation(ann_id: int, image_id: int, category_id: int, quad: Quad,
                geometry: DeviceGeometry) -> dict[str, Any]:
    keypoints: list[float] = []
    for c in quad.corners:
        keypoints += [c.x, c.y, 2 if c.visible else 1]
    return {
        "id": ann_id, "image_id": image_id, "category_id": category_id,
        "keypoints": keypoints, "num_keypoints": len(quad.corners),
        "segmentation": [[v for c in quad.corners for v in (c.x, c.y)]],
        "bbox": [round(v, 2) for v in quad.bbox(geometry.width, geometry.height)],
        "area": round(quad.area(), 2), "iscrowd": 0,
    }


def to_coco(entries: Iterable[tuple[str, DeviceGeometry]]) -> dict[str, Any]:
    """The COCO document of (file name, geometry) pairs, in their order."""
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    ids = {name: k for k, name in enumerate(CATEGORIES, 1)}
    for image_id, (file_name, g) in enumerate(entries, 1):
        images.append({"id": image_id, "file_name": file_name, "width": g.width,
                       "height": g.height})
        for name, field in CATEGORIES.items():
            quad = getattr(g, field)
            if quad is not None:
                annotations.append(_annotation(len(annotations) + 1, image_id, ids[name], quad, g))
    categories = [{"id": ids[name], "name": name, "supercategory": "device",
                   "keypoints": list(CORNERS), "skeleton": _SKELETON} for name in CATEGORIES]
    return {"info": {"description": "photograde device geometry (corners: top-left, top-right, "
                                    "bottom-right, bottom-left; continuous pixel coordinates)"},
            "images": images, "annotations": annotations, "categories": categories}


def write_coco(path: str | Path, entries: Iterable[tuple[str, DeviceGeometry]]) -> Path:
    """Write :func:`to_coco` of ``entries`` to ``path`` (same entries, same bytes)."""
    path = Path(path)
    doc = to_coco(entries)
    parts = []  # one image, annotation or category per line: readable, diffable, compact
    for key, value in doc.items():
        if isinstance(value, list):
            items = ",\n  ".join(json.dumps(v, separators=(",", ":")) for v in value)
            parts.append(f"{json.dumps(key)}: [\n  {items}\n ]" if value else f'"{key}": []')
        else:
            parts.append(f"{json.dumps(key)}: {json.dumps(value)}")
    path.write_text("{\n " + ",\n ".join(parts) + "\n}\n", encoding="utf-8")
    return path


def _load(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise AnnotationError(f"{path}: file not found") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise AnnotationError(f"{path}: not JSON ({e})") from None
    if not isinstance(doc, dict) or not all(isinstance(doc.get(k), list)
                                            for k in ("images", "annotations", "categories")):
        raise AnnotationError(f"{path}: not a COCO file (expected an object with the lists "
                              "images, annotations and categories)")
    return doc


def _categories(path: Path, doc: dict[str, Any]) -> dict[Any, str]:
    out = {}
    for cat in doc["categories"]:
        name = cat.get("name") if isinstance(cat, dict) else None
        if name not in CATEGORIES:
            raise AnnotationError(f"{path}: category {name!r} is not one of "
                                  f"{', '.join(CATEGORIES)}")
        out[cat.get("id")] = name
    return out


def _images(path: Path, doc: dict[str, Any]) -> dict[Any, dict[str, Any]]:
    out: dict[Any, dict[str, Any]] = {}
    names: set[str] = set()
    for im in doc["images"]:
        ok = isinstance(im, dict) and isinstance(im.get("file_name"), str) and all(
            isinstance(im.get(k), int) and im[k] > 0 for k in ("width", "height"))
        if not ok:
            raise AnnotationError(f"{path}: image {im!r:.80}: needs id, file_name, and width "
                                  "and height in pixels")
        if im["file_name"] in names:
            raise AnnotationError(f"{path}: image {im['file_name']!r} is listed twice")
        names.add(im["file_name"])
        out[im.get("id")] = im
    return out


def _quad(where: str, keypoints: Any) -> list[tuple[float, float, int]]:
    if not isinstance(keypoints, list) or len(keypoints) != 3 * len(CORNERS):
        n = len(keypoints) if isinstance(keypoints, list) else 0
        raise AnnotationError(f"{where}: {n} keypoint values, expected {3 * len(CORNERS)} "
                              f"(x, y, v for each of the {len(CORNERS)} corners)")
    triples = [tuple(keypoints[k:k + 3]) for k in range(0, len(keypoints), 3)]
    for name, (x, y, v) in zip(CORNERS, triples, strict=True):
        if not all(isinstance(t, int | float) for t in (x, y)) or v not in (1, 2):
            x, y = (f"{t:g}" if isinstance(t, int | float) else repr(t) for t in (x, y))
            raise AnnotationError(f"{where}: corner {name} is ({x}, {y}, v={v}); every corner "
                                  "needs a position and v=2 (in the image) or 1 (outside it)")
    return triples


def read_coco(path: str | Path) -> dict[str, DeviceGeometry]:
    """Geometry by ``file_name`` from a COCO keypoints file (images without a ``phone``
    annotation have none); raises :class:`AnnotationError` naming the first problem."""
    path = Path(path)
    doc = _load(path)
    categories, images = _categories(path, doc), _images(path, doc)
    fields: dict[Any, dict[str, Any]] = {}
    for ann in doc["annotations"]:
        ann = ann if isinstance(ann, dict) else {}
        im = images.get(ann.get("image_id"))
        if im is None:
            raise AnnotationError(f"{path}: annotation {ann.get('id')}: unknown image id "
                                  f"{ann.get('image_id')!r}")
        name = categories.get(ann.get("category_id"))
        where = f"{path}: image {im['file_name']!r}: {name or 'unknown'} annotation"
        if name is None:
            raise AnnotationError(f"{where}: unknown category id {ann.get('category_id')!r}")
        found = fields.setdefault(im["id"], {})
        if CATEGORIES[name] in found:
            raise AnnotationError(f"{where}: a second one (one device per photo)")
        triples = _quad(where, ann.get("keypoints"))
        found[CATEGORIES[name]] = Quad.model_validate(
            {"corners": [{"x": x, "y": y, "visible": v == 2} for x, y, v in triples]})
    out = {}
    for image_id, found in fields.items():
        im = images[image_id]
        if "device" not in found:
            raise AnnotationError(f"{path}: image {im['file_name']!r}: no phone annotation "
                                  "(its outline is needed with the screen or camera)")
        try:
            out[im["file_name"]] = DeviceGeometry(width=im["width"], height=im["height"],
                                                  **found)
        except ValidationError as e:
            msg = e.errors()[0]["msg"].removeprefix("Value error, ")
            raise AnnotationError(f"{path}: image {im['file_name']!r}: {msg}") from None
    return out
