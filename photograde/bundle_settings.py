"""What a release writes into a bundle's manifest besides the models: the abstention threshold
(``min_confidence``) and the reference grade distribution of the drift watch."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from vision.errors import PhotogradeError

log = logging.getLogger("photograde.release")


class ReleaseError(PhotogradeError):
    """A release input is missing or unusable."""


def set_abstention(bundle: Path, evaluation: dict[str, Any], target: float) -> dict[str, Any]:
    """Write the bundle's abstention threshold: the lowest grade confidence whose decided grades
    reach ``target`` accuracy on the held-out synthetic devices (``min_confidence`` of its
    grading config; below it the decision is inconclusive). Returns what the manifest records."""
    from fusion.bundle import load_manifest, write_manifest

    grades = (evaluation["synthetic"].get("grades") or {}).get("risk_coverage")
    if not grades:
        raise ReleaseError("the held-out synthetic evaluation has no grade-level figures")
    key = f"{target:g}"
    if key not in grades["for_accuracy"]:
        raise ReleaseError(f"--target-accuracy {target}: not one of the evaluated targets "
                           f"({', '.join(grades['for_accuracy'])})")
    found = grades["for_accuracy"][key]
    record: dict[str, Any] = {"target_accuracy": target, "measured_on": "synthetic held-out set"}
    manifest = load_manifest(bundle, verify_hashes=False)
    if found:
        manifest.grading.decision["min_confidence"] = round(float(found["threshold"]), 3)
        record |= found
    else:  # no share of the grades reaches the target: abstaining would not help
        log.warning("release: no confidence threshold reaches %.0f%% accuracy on the held-out "
                    "set; the bundle decides every grade", 100 * target)
        manifest.grading.decision.pop("min_confidence", None)
        record |= {"threshold": None}
    manifest.abstention = record
    write_manifest(bundle, manifest)
    return record


def predicted_counts(grades: dict[str, Any] | None) -> dict[str, int]:
    """The predicted grades counted from ``evaluate bundle``'s grade figures (the column sums
    of its confusion matrix: the grades as served)."""
    if not grades or not grades.get("n"):
        return {}
    return {g: sum(row[j] for row in grades["confusion_matrix"])
            for j, g in enumerate(grades["grades"])}


def set_reference(bundle: Path, counts: Mapping[str, int], measured_on: str) -> dict[str, Any]:
    """Write the bundle's reference grade distribution (``reference`` in its manifest: what
    the service's drift watch compares the served grades with) from counts per grade; returns
    what the manifest records."""
    from fusion.bundle import ReferenceInfo, load_manifest, write_manifest

    n = sum(counts.values())
    if not n:
        raise ReleaseError(f"{bundle}: no graded device (both photos and a checklist), so no "
                           "reference distribution")
    manifest = load_manifest(bundle, verify_hashes=False)
    manifest.reference = ReferenceInfo(
        grade_distribution={g: round(c / n, 6) for g, c in counts.items()}, devices=n,
        measured_on=measured_on)
    write_manifest(bundle, manifest)
    return manifest.reference.model_dump()
