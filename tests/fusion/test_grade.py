"""The typed grade result, assembled by fusion from given probabilities (no ONNX, no bundle)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fusion.grade import (
    GradeResult,
    Prediction,
    assemble_grade,
    decided_grade,
    grade_distribution,
    risk_grades,
)
from fusion.model import FusionModel
from fusion.policy import Decision, load_policy

FLAWLESS = np.array([0.97, 0.01, 0.01, 0.01])
LIGHT_SCRATCHES = np.array([0.1, 0.8, 0.05, 0.05])
LIGHT_WEAR = np.array([0.05, 0.9, 0.03, 0.02])


def _grade(screen, shell, failed=(), battery=91, refurbisher_grade=None, **kw) -> GradeResult:
    policy = load_policy()
    probs = {"screen": screen, "shell": shell}
    p = grade_distribution(policy, FusionModel(policy.grades), probs, failed, battery)
    grade = decided_grade(policy, probs, failed, battery)
    risk = dict.fromkeys(risk_grades(policy, grade, refurbisher_grade), 0.1)
    return assemble_grade(policy, p, probs, failed_checks=list(failed),
                          battery_health_pct=battery, return_risk=risk, bundle_version="b1",
                          refurbisher_grade=refurbisher_grade, **kw)


def test_grade_caps_and_the_deciding_reason():
    out = _grade(LIGHT_SCRATCHES, LIGHT_WEAR)
    assert out.grade == "fair" and out.sellable
    assert out.confidence == pytest.approx(max(out.grade_probabilities.values()))
    assert sum(out.grade_probabilities.values()) == pytest.approx(1)
    assert out.parts["screen"].condition == "light_scratches"
    assert out.parts["screen"].probability == pytest.approx(0.8)
    assert out.parts["shell"].condition == "light_wear"
    by_rule = {r.rule: r for r in out.reasons}
    assert set(by_rule) == {"screen", "shell"}
    assert by_rule["screen"].caps_at == "fair" and by_rule["screen"].decides
    assert by_rule["shell"].caps_at == "good" and not by_rule["shell"].decides
    assert by_rule["shell"].probability == pytest.approx(0.9)
    assert out.decision is None and out.gap is None
    assert set(out.return_risk) == {"fair"}


def test_failed_check_and_low_battery_cap_and_decide():
    out = _grade(FLAWLESS, FLAWLESS, failed=["wifi"], battery=70, refurbisher_grade="excellent")
    assert out.grade == "broken" and not out.sellable
    reasons = {r.rule: r for r in out.reasons}
    assert reasons["failed_checks"].detail == "wifi" and reasons["failed_checks"].decides
    assert reasons["battery"].caps_at == "broken" and reasons["battery"].probability is None
    assert not reasons["screen"].decides
    assert (out.gap, out.decision) == (3, Decision.JUSTIFICATION_REQUIRED)
    assert list(out.return_risk) == ["excellent", "broken"]  # best first
    assert out.functional.failed_checks == ["wifi"] and out.functional.battery_health_pct == 70


def test_decisions_by_gap():
    assert _grade(FLAWLESS, FLAWLESS, refurbisher_grade="excellent").decision == "validated"
    assert _grade(FLAWLESS, FLAWLESS, refurbisher_grade="good").decision == "suggestion"
    with pytest.raises(ValueError, match="unknown grade 'mint'"):
        _grade(FLAWLESS, FLAWLESS, refurbisher_grade="mint")


def test_json_has_the_historic_shape():
    out = _grade(LIGHT_SCRATCHES, FLAWLESS, battery=None, refurbisher_grade="good",
                 damage_boxes={"screen": (0.1, 0.2, 0.5, 0.6)}, heatmaps={"screen": "UE5H"})
    data = json.loads(out.model_dump_json())
    assert list(data) == ["grade", "confidence", "grade_probabilities", "sellable", "parts",
                          "functional", "reasons", "return_risk", "bundle_version",
                          "refurbisher_grade", "gap", "decision"]
    assert list(data["parts"]["screen"]) == ["condition", "probability", "probabilities",
                                             "damage_box", "heatmap_png"]
    assert data["parts"]["screen"]["damage_box"] == [0.1, 0.2, 0.5, 0.6]
    assert list(data["parts"]["shell"]) == ["condition", "probability", "probabilities",
                                            "damage_box"]  # no heatmap asked: no key
    assert data["parts"]["shell"]["damage_box"] is None  # present as null
    assert data["functional"] == {"failed_checks": [], "battery_health_pct": None}
    assert list(data["reasons"][0]) == ["rule", "detail", "caps_at", "decides", "probability"]
    assert data["decision"] == "suggestion"
    plain = json.loads(_grade(FLAWLESS, FLAWLESS).model_dump_json())
    assert {"refurbisher_grade", "gap", "decision"}.isdisjoint(plain)
    assert all("probability" in r for r in plain["reasons"])  # part rules only here


def test_stored_prediction_round_trips():
    out = _grade(LIGHT_SCRATCHES, LIGHT_WEAR, refurbisher_grade="good",
                 heatmaps={"screen": "UE5H", "shell": "UE5H"})
    stored = out.prediction().model_dump(mode="json")
    assert "bundle_version" not in stored and "decision" not in stored
    assert all("heatmap_png" not in part for part in stored["parts"].values())
    assert out.parts["screen"].heatmap_png == "UE5H"  # the result itself keeps it
    assert Prediction.model_validate(stored).model_dump(mode="json") == stored


def test_weak_evidence_is_inconclusive_with_its_reason():
    import dataclasses

    policy = dataclasses.replace(load_policy(), min_confidence=0.9)
    probs = {"screen": np.array([0.41, 0.39, 0.1, 0.1]), "shell": FLAWLESS}
    p = grade_distribution(policy, FusionModel(policy.grades), probs, (), 91)
    grade = decided_grade(policy, probs, (), 91)
    out = assemble_grade(policy, p, probs, failed_checks=[], battery_health_pct=91,
                         return_risk={grade: 0.1}, bundle_version="b1", refurbisher_grade=grade)
    assert grade == "excellent" and out.confidence < 0.9
    assert out.gap == 0 and out.decision is Decision.INCONCLUSIVE
    assert out.inconclusive_reason == (f"screen: flawless only 41% likely; grade excellent only "
                                       f"{out.confidence:.0%} likely (threshold 90%)")
    data = json.loads(out.model_dump_json())
    assert list(data)[-2:] == ["decision", "inconclusive_reason"]
    assert data["decision"] == "inconclusive"
    assert "inconclusive_reason" not in out.prediction().model_dump(mode="json")
    sure = _grade(FLAWLESS, FLAWLESS, refurbisher_grade="excellent")
    assert sure.inconclusive_reason is None
    assert "inconclusive_reason" not in json.loads(sure.model_dump_json())
