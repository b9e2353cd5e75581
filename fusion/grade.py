"""The grade result, typed: what ``photograde predict``, ``/v1/grade`` and evaluations return.

:func:`grade_distribution` fuses the part probabilities with the checklist facts;
:func:`assemble_grade` builds the :class:`GradeResult` from them, the return-risk numbers (the
caller computes them with the tabular model, for :func:`risk_grades`) and, optionally, the
damage boxes and heatmaps the caller computed. No ONNX here: plain numbers in, a model out.

The JSON form is the one photograde has always written: optional fields that are None are left
out (a part's ``heatmap_png``, a reason's ``probability``, the decision fields without a
refurbisher grade), while ``damage_box`` and ``battery_health_pct`` are written as null.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, SerializerFunctionWrapHandler, model_serializer

from fusion.model import FusionModel, policy_distribution
from fusion.policy import Decision, GradingPolicy
from vision.conditions import CONDITIONS

Box = tuple[float, float, float, float]


class ResultModel(BaseModel):
    """A model whose JSON leaves out the fields of ``_omit_if_none`` that are None, and puts the
    fields of ``_first`` first."""

    _omit_if_none: ClassVar[frozenset[str]] = frozenset()
    _first: ClassVar[tuple[str, ...]] = ()

    @model_serializer(mode="wrap")
    def _serialize(self, handler: SerializerFunctionWrapHandler):
        data = handler(self)
        out = {k: data.pop(k) for k in self._first if k in data}
        out.update((k, v) for k, v in data.items()
                   if v is not None or k not in self._omit_if_none)
        return out


class PartResult(ResultModel):
    """One part's most probable condition, its probabilities and where the damage is."""

    _omit_if_none = frozenset({"heatmap_png"})
    condition: str
    probability: float
    probabilities: dict[str, float]
    damage_box: Box | None = None
    heatmap_png: str | None = None  # base64 PNG, when asked for


class Reason(ResultModel):
    """A rule that limits the grade; ``decides``: it caps at the predicted grade."""

    _omit_if_none = frozenset({"probability"})
    rule: str
    detail: str
    caps_at: str
    decides: bool
    probability: float | None = None  # the part's condition probability (part rules)


class FunctionalResult(BaseModel):
    failed_checks: list[str]
    battery_health_pct: int | None = None


class Prediction(ResultModel):
    """The model's grade and its grounds (what an evaluation stores)."""

    grade: str
    confidence: float
    grade_probabilities: dict[str, float]
    sellable: bool
    parts: dict[str, PartResult]
    functional: FunctionalResult
    reasons: list[Reason]
    return_risk: dict[str, float]


class GradeResult(Prediction):
    """A prediction with its bundle and, given the refurbisher's grade, the decision."""

    _omit_if_none = frozenset({"refurbisher_grade", "gap", "decision"})
    bundle_version: str
    refurbisher_grade: str | None = None
    gap: int | None = None
    decision: Decision | None = None

    def prediction(self) -> Prediction:
        """What an evaluation stores: no heatmaps, bundle version or decision."""
        data = {name: getattr(self, name) for name in Prediction.model_fields}
        data["parts"] = {p: v.model_copy(update={"heatmap_png": None})
                         for p, v in self.parts.items()}
        return Prediction(**data)


def grade_distribution(policy: GradingPolicy, model: FusionModel,
                       part_probs: Mapping[str, np.ndarray], failed_checks: Sequence[str] = (),
                       battery_health_pct: int | None = None) -> np.ndarray:
    """P(grade) (G,): the policy over the part probabilities, recalibrated by ``model``."""
    return model.apply(policy_distribution(policy, part_probs["screen"], part_probs["shell"],
                                           list(failed_checks), battery_health_pct))


def best_grade(policy: GradingPolicy, p: np.ndarray) -> str:
    return policy.grades[int(np.argmax(p))]


def risk_grades(policy: GradingPolicy, grade: str, refurbisher_grade: str | None) -> list[str]:
    """The grades whose return risk a result reports, best first."""
    return sorted({grade, *([refurbisher_grade] if refurbisher_grade else [])}, key=policy.rank)


def assemble_grade(policy: GradingPolicy, p: np.ndarray, part_probs: Mapping[str, np.ndarray],
                   *, failed_checks: Sequence[str], battery_health_pct: int | None,
                   return_risk: Mapping[str, float], bundle_version: str,
                   refurbisher_grade: str | None = None,
                   damage_boxes: Mapping[str, Box | None] | None = None,
                   heatmaps: Mapping[str, str] | None = None) -> GradeResult:
    """The grade result from the grade distribution ``p`` and the part probabilities.

    ``damage_boxes`` and ``heatmaps`` (base64 PNG) by part, when the caller has them."""
    if refurbisher_grade is not None:
        policy.rank(refurbisher_grade)  # unknown grade -> ValueError naming it
    best = int(np.argmax(p))
    grade = policy.grades[best]
    parts = {}
    for part, probs in part_probs.items():
        cls = int(np.argmax(probs))
        parts[part] = PartResult(
            condition=CONDITIONS[part][cls], probability=float(probs[cls]),
            probabilities=dict(zip(CONDITIONS[part], map(float, probs), strict=True)),
            damage_box=(damage_boxes or {}).get(part), heatmap_png=(heatmaps or {}).get(part))
    caps = policy.caps(parts["screen"].condition, parts["shell"].condition, list(failed_checks),
                       battery_health_pct)
    reasons = [Reason(rule=cap.rule, detail=cap.detail, caps_at=cap.grade,
                      decides=cap.grade == grade,
                      probability=parts[cap.rule].probability if cap.rule in parts else None)
               for cap in caps]
    decision: dict[str, Any] = {}
    if refurbisher_grade is not None:
        decision = {"refurbisher_grade": refurbisher_grade,
                    "gap": policy.gap(refurbisher_grade, grade),
                    "decision": policy.decide(refurbisher_grade, grade)}
    return GradeResult(
        grade=grade, confidence=float(p[best]),
        grade_probabilities=dict(zip(policy.grades, map(float, p), strict=True)),
        sellable=policy.sellable(grade), parts=parts,
        functional=FunctionalResult(failed_checks=list(failed_checks),
                                    battery_health_pct=battery_health_pct),
        reasons=reasons, return_risk=dict(return_risk), bundle_version=bundle_version,
        **decision)
