"""Does a grade result contradict its reasons? :func:`contradictions` says where.

The rule (:mod:`fusion.grade`): the grade is the grading policy applied to the part decisions,
the failed checks and the battery, and the reasons are that derivation. So, from the result
alone (a :class:`~fusion.grade.GradeResult`, a stored :class:`~fusion.grade.Prediction`, their
JSON, or an evaluation's JSON with its ``prediction``) and the grading policy it was made with:

- the grade re-derived from the shown reasons (their worst ``caps_at``; the best grade with no
  reason) is the grade;
- every ``decides`` reason caps at exactly the grade, and every reason that does is marked;
- ``sellable`` follows the grade;
- the reasons are the policy's for the shown facts: each part's decided condition (its most
  probable one) with its probability, the failed checks and the battery, each with its cap;
- ``confidence`` is the grade's probability in ``grade_probabilities``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fusion.grade import Prediction
from fusion.policy import GradingPolicy, policy_from_dict

TOLERANCE = 1e-6


def _prediction(result: Prediction | Mapping[str, Any]) -> Prediction:
    if isinstance(result, Prediction):
        return result
    if "prediction" in result and "grade" not in result:  # an evaluation's JSON
        result = result["prediction"]
    return Prediction.model_validate(result)


def _derivation(pred: Prediction, policy: GradingPolicy) -> list[str]:
    """The grade against the worst cap of the shown reasons, and the ``decides`` marks."""
    out = []
    known = [r for r in pred.reasons if r.caps_at in policy.grades]
    out += [f"reason {r.rule}: caps at {r.caps_at!r}, not a grade of the {policy.name} scale"
            for r in pred.reasons if r.caps_at not in policy.grades]
    derived = policy.worst(policy.grades[0], *(r.caps_at for r in known))
    if derived != pred.grade:
        out.append(f"grade {pred.grade} but the reasons give {derived}")
    for r in known:
        if r.decides and r.caps_at != pred.grade:
            out.append(f"reason {r.rule} decides but caps at {r.caps_at}, not {pred.grade}")
        if not r.decides and r.caps_at == pred.grade:
            out.append(f"reason {r.rule} caps at the grade {pred.grade} but is not marked decides")
    if pred.sellable != policy.sellable(pred.grade):
        out.append(f"sellable is {pred.sellable} but grade {pred.grade} is "
                   f"{'' if policy.sellable(pred.grade) else 'not '}sellable")
    return out


def _facts(pred: Prediction, policy: GradingPolicy) -> list[str]:
    """The shown reasons against the policy's for the shown part decisions and checklist."""
    out = []
    for part, shown in pred.parts.items():
        top = max(shown.probabilities, key=shown.probabilities.__getitem__)
        if shown.probabilities[top] > shown.probabilities.get(shown.condition, -1) + TOLERANCE:
            out.append(f"{part}: shows {shown.condition} but {top} is more probable")
    for part in {"screen", "shell"} - set(pred.parts):
        out.append(f"no {part} in parts")
    if out:
        return out
    try:
        expected = policy.caps(pred.parts["screen"].condition, pred.parts["shell"].condition,
                               pred.functional.failed_checks, pred.functional.battery_health_pct)
    except KeyError as e:
        return [f"a part condition is not in the {policy.name} policy: {e}"]
    want = [(c.rule, c.detail, c.grade) for c in expected]
    shown_reasons = [(r.rule, r.detail, r.caps_at) for r in pred.reasons]
    if shown_reasons != want:
        out.append(f"reasons {shown_reasons} are not the policy's {want}")
    for r in pred.reasons:
        if r.rule in pred.parts and (r.probability is None or abs(
                r.probability - pred.parts[r.rule].probability) > TOLERANCE):
            out.append(f"reason {r.rule}: probability {r.probability} is not the part's "
                       f"{pred.parts[r.rule].probability}")
    return out


def contradictions(result: Prediction | Mapping[str, Any],
                   policy: GradingPolicy | Mapping[str, Any]) -> list[str]:
    """Every way ``result`` contradicts its reasons or the rule; empty when it follows them.

    ``policy``: the grading policy, or its dict (a bundle manifest's ``grading``)."""
    if not isinstance(policy, GradingPolicy):
        policy = policy_from_dict(dict(policy))
    pred = _prediction(result)
    if pred.grade not in policy.grades:
        return [f"grade {pred.grade!r} is not on the {policy.name} scale"]
    out = _derivation(pred, policy) + _facts(pred, policy)
    p = pred.grade_probabilities.get(pred.grade)
    if p is None or abs(p - pred.confidence) > TOLERANCE:
        out.append(f"confidence {pred.confidence:.6f} is not the probability of grade "
                   f"{pred.grade} ({p})")
    return out
