"""What the photos and the seller's history say about a listed device, for the return-risk
model beside the device's facts (:mod:`tabular.features`).

A buyer returns a device mostly when it is worse than its listing said; the checklist and the
announced grade alone cannot see that (a return-risk model on them alone scores ROC-AUC about
0.56 on a synthetic marketplace history). The condition model can: its part probabilities, the
fused grade distribution and its gap to the announced grade, and the photo check's confidence
that the photos show the phone's right sides. The seller's trust score at listing time adds
their habit (their past returns and how often the model validated their grades).

Every column is optional: unknown values are NaN and the model imputes them (a grade through
the stateless API has no seller history; a bundle without a photo-check model has no photo
scores).
"""

from __future__ import annotations

import math

import numpy as np
from pydantic import BaseModel, Field

from vision.conditions import SCREEN_CONDITIONS, SHELL_CONDITIONS

#: The evidence columns, in model input order (after the facts').
EVIDENCE_FEATURES: tuple[str, ...] = (
    *(f"screen_p_{c}" for c in SCREEN_CONDITIONS), *(f"shell_p_{c}" for c in SHELL_CONDITIONS),
    "expected_rank", "model_gap", "p_worse_than_announced", "trust_score",
    "photo_phone_p", "photo_side_p",
)


class Evidence(BaseModel):
    """The model's and the history's view of one device (None: unknown)."""

    screen: tuple[float, ...] | None = Field(
        None, description="calibrated P(screen condition), in SCREEN_CONDITIONS order")
    shell: tuple[float, ...] | None = Field(
        None, description="calibrated P(shell condition), in SHELL_CONDITIONS order")
    grades: tuple[float, ...] | None = Field(
        None, description="the fused P(grade), best grade first")
    trust_score: float | None = Field(None, ge=0, le=100,
                                      description="the seller's trust score at listing time")
    phone: float | None = Field(None, ge=0, le=1,
                                description="the photo check's lowest P(phone) of the photos")
    side: float | None = Field(None, ge=0, le=1, description="the photo check's lowest P(the "
                               "photo shows its slot's side)")

    @classmethod
    def from_arrays(cls, screen: np.ndarray, shell: np.ndarray, grades: np.ndarray,
                    **rest: float | None) -> Evidence:
        """From the probability arrays the grader computes."""
        return cls(screen=tuple(map(float, screen)), shell=tuple(map(float, shell)),
                   grades=tuple(map(float, grades)), **rest)


def _nan(value: float | None) -> np.float32:
    return np.float32(math.nan if value is None else value)


def evidence_features(ev: Evidence | None, announced_rank: int) -> dict[str, np.float32]:
    """The evidence columns of a device listed at ``announced_rank`` (0 = best grade)."""
    ev = ev or Evidence()
    row: dict[str, np.float32] = {}
    for part, names in (("screen", SCREEN_CONDITIONS), ("shell", SHELL_CONDITIONS)):
        probs = getattr(ev, part)
        if probs is not None and len(probs) != len(names):
            raise ValueError(f"{part}: {len(probs)} probabilities for {len(names)} conditions")
        for i, c in enumerate(names):
            row[f"{part}_p_{c}"] = _nan(None if probs is None else probs[i])
    expected = gap = worse = None
    if ev.grades is not None:
        p = np.asarray(ev.grades, np.float64)
        ranks = np.arange(len(p))
        expected = float((p * ranks).sum())
        gap = expected - announced_rank
        worse = float(p[ranks > announced_rank].sum())
    row["expected_rank"], row["model_gap"] = _nan(expected), _nan(gap)
    row["p_worse_than_announced"] = _nan(worse)
    row["trust_score"] = _nan(ev.trust_score)
    row["photo_phone_p"], row["photo_side_p"] = _nan(ev.phone), _nan(ev.side)
    return row
