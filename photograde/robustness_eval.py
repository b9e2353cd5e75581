"""``photograde evaluate robustness``: the served screen verdict on degraded copies of labelled
fronts. Does the service still grade a worse photo right, or refuse it, rather than grade it
wrong?

Each labelled front (cracked or not) is degraded in memory, the way uploads really go wrong:
re-compressed, downscaled, blurred, noisy, under- or over-exposed, turned sideways. Each copy
is encoded as a JPEG and goes through the service's own path, torch-free: decoding, the photo
check (measured and learned), the vision model and the cracked-screen probe blended in
(:class:`serve.runtime.Grader`). Per degradation and level:

- how many photos the check refused, and why;
- on the accepted ones, the cracked verdict (P(cracked) >= 0.5): ROC-AUC, balanced accuracy;
- **silently wrong**: accepted and wrongly judged, as a share of all the copies: the mistakes
  a user would meet without a warning. A refused photo is not wrong: the person is told how to
  retake it.

The levels are fixed and the noise seeded per photo, so two runs give the same figures.
"""

from __future__ import annotations

import io
import json
import zlib
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter
from pydantic import BaseModel
from tqdm import tqdm

from serve.runtime import Grader
from vision.conditions import CONDITIONS
from vision.errors import PhotogradeError
from vision.photocheck import PhotoCheckConfig
from vision.preprocess import ImageError

CRACKED = CONDITIONS["screen"].index("cracked")
#: JPEG quality of every degraded copy (but the ``jpeg`` degradation's own).
SAVE_QUALITY = 92


class RobustnessError(PhotogradeError):
    """No front labelled cracked or not cracked in the manifest(s)."""


def _jpeg(im: Image.Image, quality: float, rng: np.random.Generator) -> Image.Image:
    return im  # the encoding (:func:`degraded_bytes`) uses the level as its quality


def _downscale(im: Image.Image, factor: float, rng: np.random.Generator) -> Image.Image:
    size = (max(1, round(im.width * factor)), max(1, round(im.height * factor)))
    return im.resize(size, Image.Resampling.LANCZOS)


def _blur(im: Image.Image, fraction: float, rng: np.random.Generator) -> Image.Image:
    return im.filter(ImageFilter.GaussianBlur(fraction * max(im.size)))


def _noise(im: Image.Image, std: float, rng: np.random.Generator) -> Image.Image:
    a = np.asarray(im, np.float32) + rng.normal(0, std * 255, (im.height, im.width, 3))
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))


def _exposure(im: Image.Image, factor: float, rng: np.random.Generator) -> Image.Image:
    return ImageEnhance.Brightness(im).enhance(factor)


def _rotate(im: Image.Image, degrees: float, rng: np.random.Generator) -> Image.Image:
    return im.rotate(degrees, expand=True)


Degrade = Callable[[Image.Image, float, np.random.Generator], Image.Image]
#: name -> (what it does, the function, its levels from mild to severe).
DEGRADATIONS: dict[str, tuple[str, Degrade, tuple[float, ...]]] = {
    "jpeg": ("re-compressed at JPEG quality", _jpeg, (50, 25, 10)),
    "downscale": ("downscaled by the factor", _downscale, (0.5, 0.3, 0.15)),
    "blur": ("Gaussian blur, sigma as a fraction of the long side", _blur,
             (0.002, 0.005, 0.01)),
    "noise": ("Gaussian noise, std as a fraction of full scale", _noise, (0.03, 0.06, 0.12)),
    "dark": ("brightness multiplied by", _exposure, (0.5, 0.3, 0.15)),
    "bright": ("brightness multiplied by (clipping)", _exposure, (1.5, 2.0, 3.0)),
    "rotate": ("turned by degrees, no EXIF", _rotate, (90, 180, 270)),
}


class Front(BaseModel):
    """One labelled front to degrade."""

    path: Path
    cracked: bool


class Outcome(BaseModel):
    """One degraded copy as served: refused (and why) or its P(cracked)."""

    refused: str | None = None
    p_cracked: float | None = None


def degraded_bytes(path: Path, name: str, level: float) -> bytes:
    """The photo at ``path`` degraded by ``name`` at ``level`` (``none``: as it is, re-encoded
    like the others), as JPEG bytes; the noise is seeded by the file's name."""
    with Image.open(path) as raw:
        im = raw.convert("RGB")
    if name != "none":
        rng = np.random.default_rng(zlib.crc32(path.name.encode()))
        im = DEGRADATIONS[name][1](im, level, rng)
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=int(level) if name == "jpeg" else SAVE_QUALITY)
    return buf.getvalue()


def served_outcome(grader: Grader, data: bytes, cfg: PhotoCheckConfig) -> Outcome:
    """The photo check's answer on ``data`` in the front slot, or the served P(cracked)."""
    try:
        photo = grader.decode(data, measured=True, scored=True, view="front")
    except ImageError as e:
        return Outcome(refused=f"unreadable: {e}")
    (verdict,) = grader.check_photos([photo], ["front"], cfg)
    if verdict.rejection is not None:
        return Outcome(refused=verdict.rejection.reason.value)
    return Outcome(p_cracked=float(grader.front_screen(photo)[CRACKED]))


def summarise(fronts: list[Front], outcomes: list[Outcome]) -> dict[str, Any]:
    """The figures of one degradation level (see the module doc)."""
    from training.metrics import cracked_scores

    kept = [(f.cracked, o.p_cracked) for f, o in zip(fronts, outcomes, strict=True)
            if o.p_cracked is not None]
    y = np.array([k[0] for k in kept], bool)
    p = np.array([k[1] for k in kept], float)
    wrong = int(((p >= 0.5) != y).sum()) if kept else 0
    s = cracked_scores(y, p) if 0 < y.sum() < len(y) else None
    return {"photos": len(fronts), "accepted": len(kept),
            "refused": dict(Counter(o.refused for o in outcomes if o.refused).most_common()),
            "roc_auc": round(s["roc_auc"], 4) if s else None,
            "balanced_accuracy": round(s["balanced_accuracy"], 4) if s else None,
            "cracked_missed": int((y & (p < 0.5)).sum()),
            "intact_called_cracked": int((~y & (p >= 0.5)).sum()),
            "silently_wrong": round(wrong / len(fronts), 4)}


def labelled_fronts(manifests: list[Path]) -> list[Front]:
    """The fronts of the manifests labelled cracked or not cracked (unsure labels left out)."""
    from training.manifest import load_manifest
    from training.metrics import cracked_truth
    from training.samples import samples_from

    screens = [s for s in samples_from([load_manifest(m) for m in manifests])
               if s.part == "screen"]
    allowed = np.array([s.allowed for s in screens], bool).reshape(-1, len(CONDITIONS["screen"]))
    truth = cracked_truth(allowed, CRACKED)
    fronts = [Front(path=s.path, cracked=bool(t)) for s, t in zip(screens, truth, strict=True)
              if t >= 0]
    if not fronts:
        raise RobustnessError("no front labelled cracked or not cracked in "
                              + ", ".join(map(str, manifests)))
    return fronts


def evaluate_robustness(bundle: Path, manifests: list[Path], out: Path | None = None, *,
                        int8: bool = False, only: list[str] | None = None,
                        cfg: PhotoCheckConfig | None = None, threads: int | None = None,
                        progress: bool = True) -> dict[str, Any]:
    """Every degradation (``only``: those named) at every level, and the photos as they are;
    the report (also written to ``out`` as JSON when given)."""
    names = only or list(DEGRADATIONS)
    unknown = sorted(set(names) - set(DEGRADATIONS))
    if unknown:
        raise RobustnessError(f"unknown degradation(s) {', '.join(unknown)}; known: "
                              + ", ".join(DEGRADATIONS))
    fronts = labelled_fronts(manifests)
    grader = Grader(bundle, int8=int8, threads=threads)
    cfg = cfg or PhotoCheckConfig()
    runs = [("none", 0.0), *((n, lv) for n in names for lv in DEGRADATIONS[n][2])]
    report: dict[str, Any] = {"bundle": grader.manifest.bundle_version,
                              "precision": "int8" if int8 else "fp32",
                              "photos": len(fronts), "cracked": sum(f.cracked for f in fronts),
                              "degradations": {n: DEGRADATIONS[n][0] for n in names},
                              "results": []}
    for name, level in tqdm(runs, desc="degradations", unit="level", disable=not progress):
        outcomes = [served_outcome(grader, degraded_bytes(f.path, name, level), cfg)
                    for f in fronts]
        report["results"].append({"degradation": name, "level": level,
                                  **summarise(fronts, outcomes)})
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2))
    return report


def table(report: dict[str, Any]) -> str:
    """The report as a Markdown table, one row per degradation level."""
    lines = ["| degradation | level | accepted | refused (why) | ROC-AUC | balanced accuracy "
             "| cracked missed | intact called cracked | silently wrong |",
             "|---|---:|---:|---|---:|---:|---:|---:|---:|"]
    for r in report["results"]:
        why = ", ".join(f"{k} {v}" for k, v in r["refused"].items()) or "-"
        auc, bal = r["roc_auc"], r["balanced_accuracy"]
        lines.append(f"| {r['degradation']} | {r['level']:g} | {r['accepted']}/{r['photos']} "
                     f"| {why} | {'-' if auc is None else f'{auc:.3f}'} "
                     f"| {'-' if bal is None else f'{bal:.3f}'} | {r['cracked_missed']} "
                     f"| {r['intact_called_cracked']} | {r['silently_wrong']:.1%} |")
    return "\n".join(lines)
