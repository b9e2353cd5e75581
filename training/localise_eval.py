"""Measure a localiser on labelled photos: ``photograde evaluate localiser``.

Runs the torch-free runtime (:class:`vision.localise.Localiser`) on every photo of the
manifests that has a device outline in its geometry sidecar, decoded as the service decodes
uploads. Per photo, the corner error is the mean distance between the predicted and true
corners (in order) divided by the true device diagonal (the mean of its two diagonals), so it
does not depend on the photo's or the phone's size. Per side (front, back, all): the mean and
median error, the share of photos under 5% and 10%, and the share where a device was found.
With ``negatives``, the generator's scenes without a phone give the false "found" rate.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from training.manifest import DatasetError, load_manifest
from vision.geometry import DeviceGeometry
from vision.localise import Localisation, Localiser
from vision.preprocess import Source, open_image_sized


def corner_error(pred: Localisation, truth: DeviceGeometry) -> float:
    """Mean corner distance over the device diagonal (both in the photo's pixels)."""
    true = truth.device.points() * (pred.width / truth.width, pred.height / truth.height)
    diagonal = (np.linalg.norm(true[0] - true[2]) + np.linalg.norm(true[1] - true[3])) / 2
    return float(np.linalg.norm(pred.device.points() - true, axis=1).mean() / diagonal)


def figures(errors: Sequence[float], found: Sequence[bool]) -> dict[str, Any]:
    """The summary of one side's per-photo errors and found flags."""
    e = np.asarray(errors, np.float64)
    return {"photos": len(e), "mean_error": float(e.mean()), "median_error":
            float(np.median(e)), "under_5pct": float((e < 0.05).mean()),
            "under_10pct": float((e < 0.10).mean()), "found_rate": float(np.mean(found))}


def summary_line(side: str, f: dict[str, Any]) -> str:
    """One printed line of :func:`figures`."""
    return (f"{side:5s} {f['photos']:5d} photos: mean corner error {f['mean_error']:.2%} of "
            f"the diagonal (median {f['median_error']:.2%}), < 5%: {f['under_5pct']:.1%}, "
            f"< 10%: {f['under_10pct']:.1%}, found {f['found_rate']:.1%}")


def _localise(loc: Localiser, sources: Sequence[Source], desc: str, progress: bool,
              batch: int = 32) -> list[Localisation]:
    out: list[Localisation] = []
    for i in tqdm(range(0, len(sources), batch), desc=desc, unit="batch", leave=False,
                  disable=not progress):
        opened = [open_image_sized(s, draft_size=loc.pre.img_size)
                  for s in sources[i:i + batch]]
        out += loc.localise_images([im for im, _ in opened], [size for _, size in opened])
    return out


def evaluate_localiser(model: str | Path, manifests: Sequence[str], negatives: int = 0,
                       progress: bool = True) -> dict[str, Any]:
    """The figures of ``model`` (run directory or .onnx) on ``manifests``, per side."""
    loc = Localiser(model)
    items: list[tuple[Path, DeviceGeometry, str]] = []
    for m in manifests:
        for row in load_manifest(m).rows:
            for side in ("front", "back"):
                g, path = row.geometry(side), row.photo(side)
                if g is not None and path is not None:
                    items.append((path, g, side))
    if not items:
        raise DatasetError(f"no photo of {', '.join(manifests)} has a device outline (a "
                           "geometry sidecar <stem>.annotations.json is needed)")
    preds = _localise(loc, [p for p, _, _ in items], "localise", progress)
    errors = [corner_error(p, g) for p, (_, g, _) in zip(preds, items, strict=True)]
    sides: dict[str, Any] = {}
    for side in ("front", "back", "all"):
        keep = [k for k, it in enumerate(items) if side in ("all", it[2])]
        if keep:
            sides[side] = figures([errors[k] for k in keep], [preds[k].found for k in keep])
    report: dict[str, Any] = {"model": str(model), "manifests": list(manifests),
                              "presence_head": loc.config.presence_head, "sides": sides}
    if negatives:
        from training.photocheck_data import empty_scenes

        scenes = _localise(loc, empty_scenes(negatives, seed=12345), "no phone", progress)
        report["negatives"] = {"photos": len(scenes),
                               "found_rate": float(np.mean([s.found for s in scenes]))}
    return report
