"""``photograde evaluate photocheck``: the photo check of a bundle, as served, on a folder of
labelled photos (torch-free: the service's decoding and :meth:`serve.runtime.Grader.check_photos`).

Layout: one sub-folder per expected outcome, any depth of files below it::

    DIR/front/        phone fronts: must pass in the front slot, be refused wrong_side in the back
    DIR/back/         phone backs: the reverse
    DIR/not_a_phone/  photos without a phone        (judged in the front slot)
    DIR/blurry/  DIR/too_dark/  DIR/overexposed/  DIR/too_small/   degraded photos (front slot)

For every folder: the share answered as expected, with ``too_small`` photos set apart for
``front`` and ``back`` (their answer is right, but the issue counts them separately), and the
breakdown of every answer.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from tqdm import tqdm

from serve.runtime import Grader
from vision.errors import PhotogradeError
from vision.photocheck import PhotoCheckConfig, RejectReason, Slot
from vision.preprocess import ImageError

SIDES: tuple[Slot, ...] = ("front", "back")
EXTENSIONS = {".jpg", ".jpeg", ".png", ".webp", ".heic", ".heif", ".avif", ".bmp", ".tif",
              ".tiff", ".gif"}


class CheckEvalError(PhotogradeError):
    """The folder to evaluate has no labelled sub-folder."""


def _answer(grader: Grader, path: Path, slot: Slot, cfg: PhotoCheckConfig) -> str:
    try:
        photo = grader.decode(path)
    except ImageError:
        return "unreadable"
    (verdict,) = grader.check_photos([photo], [slot], cfg)
    return "pass" if verdict.rejection is None else verdict.rejection.reason.value


def _folder(grader: Grader, files: list[Path], expected: str, cfg: PhotoCheckConfig,
            progress: bool) -> dict[str, Any]:
    """The figures of one sub-folder."""
    trials: list[tuple[Slot, str]] = ([(expected, "pass"), (_other(expected), "wrong_side")]
                                      if expected in SIDES else [("front", expected)])
    out: dict[str, Any] = {"photos": len(files)}
    for slot, want in trials:
        answers = [_answer(grader, f, slot, cfg)
                   for f in tqdm(files, desc=f"{expected} in the {slot} slot", leave=False,
                                 disable=not progress)]
        counted = [a for a in answers if a != "too_small" or want == "too_small"]
        right = sum(a == want for a in counted)
        out[f"{slot}_slot"] = {"expected": want, "n": len(counted),
                               "too_small_set_apart": len(answers) - len(counted),
                               "rate": round(right / len(counted), 4) if counted else None,
                               "answers": dict(Counter(answers).most_common())}
    return out


def _other(side: str) -> Slot:
    return "back" if side == "front" else "front"


def evaluate_photocheck(bundle: Path, folder: Path, out: Path | None = None, *,
                        cfg: PhotoCheckConfig | None = None, threads: int | None = None,
                        progress: bool = True) -> dict[str, Any]:
    """Run the check on every labelled sub-folder of ``folder``; the report (also written to
    ``out`` as JSON when given)."""
    known = {*SIDES, *(r.value for r in RejectReason if r != RejectReason.DUPLICATE)}
    subs = sorted(p for p in folder.iterdir() if p.is_dir() and p.name in known)
    if not subs:
        raise CheckEvalError(f"{folder}: no sub-folder named {', '.join(sorted(known))}")
    grader = Grader(bundle, threads=threads)
    cfg = cfg or PhotoCheckConfig()
    report: dict[str, Any] = {"bundle": grader.manifest.bundle_version,
                              "photo_check_model": grader.photocheck is not None,
                              "thresholds": cfg.model_dump(), "folders": {}}
    for sub in subs:
        files = sorted(p for p in sub.rglob("*") if p.suffix.lower() in EXTENSIONS)
        report["folders"][sub.name] = _folder(grader, files, sub.name, cfg, progress)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2))
    return report
