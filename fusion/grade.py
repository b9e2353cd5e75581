"""The grade result, typed: what ``photograde predict``, ``/v1/grade`` and evaluations return.

:func:`grade_distribution` fuses the part probabilities with the checklist facts;
:func:`assemble_grade` builds the :class:`GradeResult` from them, the return-risk numbers (the
caller computes them with the tabular model, for :func:`risk_grades`) and, optionally, the
damage boxes and heatmaps the caller computed. No ONNX here: plain numbers in, a model out.

The rule (:func:`decided_grade`): the grade is the grading policy applied to the part decisions
(each part's most probable condition after temperature scaling, as ``parts`` shows it), the
failed checks and the battery: the worst cap among the reasons, the best grade with none. The
reasons are that derivation, and those that cap at the grade are marked ``decides``.
``confidence`` is the fused model's calibrated probability of that grade, and
``grade_probabilities`` how the probability spreads over grades; its most probable grade may
differ from the grade, which follows the part decisions. :mod:`fusion.explain_check` checks a
result against this rule.

Abstention: when ``confidence`` is below the policy's ``min_confidence``, the decision (given a
refurbisher grade) is ``inconclusive`` and ``inconclusive_reason`` says why
(:func:`inconclusive_reason`: the least certain part decision and the grade's confidence).

The JSON form is the one photograde has always written: optional fields that are None are left
out (a part's ``heatmap_png``, a reason's ``probability``, the decision fields without a
refurbisher grade), while ``damage_box`` and ``battery_health_pct`` are written as null.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, Field, SerializerFunctionWrapHandler, model_serializer

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
    """A rule that limits the grade: the decided condition (``detail``) and its ``probability``
    for a part, and the best grade it allows; ``decides``: it caps at exactly the grade."""

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

    grade: str = Field(description="the grading policy applied to the part decisions: the worst "
                                   "cap among the reasons")
    confidence: float = Field(description="the fused model's calibrated probability that the "
                                          "true grade is this grade")
    grade_probabilities: dict[str, float] = Field(
        description="how the probability spreads over grades (fused model); the grade itself "
                    "follows the part decisions")
    sellable: bool
    parts: dict[str, PartResult]
    functional: FunctionalResult
    reasons: list[Reason]
    return_risk: dict[str, float]


class GradeResult(Prediction):
    """A prediction with its bundle and, given the refurbisher's grade, the decision."""

    _omit_if_none = frozenset({"refurbisher_grade", "gap", "decision", "inconclusive_reason"})
    bundle_version: str
    refurbisher_grade: str | None = None
    gap: int | None = None
    decision: Decision | None = None
    inconclusive_reason: str | None = Field(
        None, description="why the decision is inconclusive: the least certain part decision "
                          "and the grade's confidence, against the threshold")

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


def part_decisions(part_probs: Mapping[str, np.ndarray]) -> dict[str, str]:
    """Each part's decided condition: its most probable one (the probabilities calibrated)."""
    return {part: CONDITIONS[part][int(np.argmax(probs))] for part, probs in part_probs.items()}


def decided_grade(policy: GradingPolicy, part_probs: Mapping[str, np.ndarray],
                  failed_checks: Sequence[str] = (), battery_health_pct: int | None = None) -> str:
    """The grade: the policy applied to the part decisions and the checklist (the worst cap)."""
    decided = part_decisions(part_probs)
    return policy.grade(decided.get("screen"), decided.get("shell"), list(failed_checks),
                        battery_health_pct)


def inconclusive_reason(policy: GradingPolicy, grade: str, confidence: float,
                        parts: Mapping[str, PartResult]) -> str | None:
    """Why a grade is too uncertain to decide (None: it is not): the least certain part decision
    and the grade's confidence, e.g. ``screen: flawless only 41% likely; grade good only 38%
    likely (threshold 55%)``."""
    if policy.conclusive(confidence):
        return None
    text = [f"{part}: {r.condition} only {r.probability:.0%} likely"
            for part, r in sorted(parts.items(), key=lambda kv: kv[1].probability)[:1]]
    text.append(f"grade {grade} only {confidence:.0%} likely "
                f"(threshold {policy.min_confidence:.0%})")
    return "; ".join(text)


def risk_grades(policy: GradingPolicy, grade: str, refurbisher_grade: str | None) -> list[str]:
    """The grades whose return risk a result reports, best first."""
    return sorted({grade, *([refurbisher_grade] if refurbisher_grade else [])}, key=policy.rank)


def assemble_grade(policy: GradingPolicy, p: np.ndarray, part_probs: Mapping[str, np.ndarray],
                   *, failed_checks: Sequence[str], battery_health_pct: int | None,
                   return_risk: Mapping[str, float], bundle_version: str,
                   refurbisher_grade: str | None = None,
                   damage_boxes: Mapping[str, Box | None] | None = None,
                   heatmaps: Mapping[str, str] | None = None) -> GradeResult:
    """The grade result from the part probabilities (the grade: :func:`decided_grade`) and the
    fused grade distribution ``p`` (the confidence: ``p`` at the grade).

    ``damage_boxes`` and ``heatmaps`` (base64 PNG) by part, when the caller has them."""
    if refurbisher_grade is not None:
        policy.rank(refurbisher_grade)  # unknown grade -> ValueError naming it
    grade = decided_grade(policy, part_probs, failed_checks, battery_health_pct)
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
    confidence = float(p[policy.rank(grade)])
    decision: dict[str, Any] = {}
    if refurbisher_grade is not None:
        decision = {"refurbisher_grade": refurbisher_grade,
                    "gap": policy.gap(refurbisher_grade, grade),
                    "decision": policy.decide(refurbisher_grade, grade, confidence),
                    "inconclusive_reason": inconclusive_reason(policy, grade, confidence, parts)}
    return GradeResult(
        grade=grade, confidence=confidence,
        grade_probabilities=dict(zip(policy.grades, map(float, p), strict=True)),
        sellable=policy.sellable(grade), parts=parts,
        functional=FunctionalResult(failed_checks=list(failed_checks),
                                    battery_health_pct=battery_health_pct),
        reasons=reasons, return_risk=dict(return_risk), bundle_version=bundle_version,
        **decision)
