"""Issue 18, trust: the grade follows the part decisions, so the reasons never contradict it.

The grade is the grading policy applied to each part's most probable condition, the failed
checks and the battery; ``confidence`` is the fused probability of that grade. The checker
(:func:`fusion.explain_check.contradictions`) re-derives the grade from the shown reasons.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from fusion.explain_check import contradictions
from fusion.grade import GradeResult, assemble_grade, grade_distribution
from fusion.model import FusionModel
from fusion.policy import BUILTIN_CONFIGS, GradingPolicy, load_policy
from tabular.schema import CHECKS, parse_device_info
from vision.conditions import CONDITIONS

#: A trained-looking recalibration: sharper than the policy, leaning towards the worst grade.
FUSION_B = {"marketplace": [0.1, -0.2, 0.0, 0.6], "ctia": [0.1, -0.2, 0.0, 0.3, 0.5]}
INFO = {"brand": "Apple", "model": "iPhone 12", "storage_gb": 128, "unlocked": True,
        "battery_health_pct": 91, "checks": dict.fromkeys(CHECKS, True)}


def _result(policy: GradingPolicy, fusion: FusionModel, screen, shell, failed=(),
            battery: int | None = 91) -> GradeResult:
    probs = {"screen": np.asarray(screen, float), "shell": np.asarray(shell, float)}
    p = grade_distribution(policy, fusion, probs, failed, battery)
    return assemble_grade(policy, p, probs, failed_checks=list(failed),
                          battery_health_pct=battery, return_risk={}, bundle_version="t")


def _fusion(policy: GradingPolicy) -> FusionModel:
    return FusionModel(policy.grades, 1.4, np.array(FUSION_B[policy.name]))


def test_the_issue_example_grade_is_implied_by_the_reasons():
    """Screen flawless 35% / cracked 30%, shell light wear most likely, every check passes:
    the old rule said "broken" (the fused argmax) while the reasons said "at best good"."""
    policy = load_policy()
    out = _result(policy, _fusion(policy), [0.35, 0.20, 0.15, 0.30], [0.25, 0.40, 0.15, 0.20])
    assert max(out.grade_probabilities, key=out.grade_probabilities.__getitem__) == "broken"
    assert out.grade == "good" and out.sellable  # the shell's light wear caps at good
    by_rule = {r.rule: r for r in out.reasons}
    assert (by_rule["screen"].detail, by_rule["screen"].caps_at) == ("flawless", "excellent")
    assert by_rule["screen"].probability == pytest.approx(0.35) and not by_rule["screen"].decides
    assert (by_rule["shell"].detail, by_rule["shell"].caps_at) == ("light_wear", "good")
    assert by_rule["shell"].decides and by_rule["shell"].probability == pytest.approx(0.40)
    assert out.confidence == out.grade_probabilities["good"] < out.grade_probabilities["broken"]
    assert contradictions(out, policy) == []


def test_the_checker_finds_the_old_rules_contradictions():
    policy = load_policy()
    out = _result(policy, _fusion(policy), [0.35, 0.20, 0.15, 0.30], [0.25, 0.40, 0.15, 0.20])
    old = out.model_copy(update={"grade": "broken", "sellable": False,
                                 "confidence": out.grade_probabilities["broken"]})
    found = contradictions(old, policy)
    assert "grade broken but the reasons give good" in found
    assert "reason shell decides but caps at good, not broken" in found
    swapped = out.model_copy(update={"sellable": False, "confidence": 0.9})
    assert len(contradictions(swapped, policy)) == 2  # sellable, confidence
    stored = json.loads(out.prediction().model_dump_json())
    stored["reasons"][1]["caps_at"] = "fair"
    found = contradictions({"prediction": stored}, policy.to_dict())  # an evaluation's JSON
    assert "grade good but the reasons give fair" in found
    assert any(f.startswith("reasons [") for f in found)  # not the policy's cap for light wear


@pytest.mark.parametrize("config", BUILTIN_CONFIGS)
def test_random_part_probabilities_never_contradict_the_reasons(config):
    """1,000 Dirichlet part-probability vectors, random failed checks and battery, per config."""
    policy = load_policy(config)
    rng = np.random.default_rng(18)
    grades_seen = set()
    for i in range(1000):
        alpha = rng.uniform(0.2, 3.0)  # from near one-hot to flat
        screen, shell = rng.dirichlet([alpha] * 4), rng.dirichlet([alpha] * 4)
        failed = [c for c in CHECKS if rng.random() < 0.03]
        battery = None if rng.random() < 0.2 else int(rng.integers(50, 101))
        fusion = FusionModel(policy.grades, float(rng.uniform(0.3, 3.0)),
                             rng.normal(0, 1, len(policy.grades)))
        out = _result(policy, fusion, screen, shell, failed, battery)
        assert contradictions(out, policy) == [], (i, out.model_dump())
        assert contradictions(out.model_dump(mode="json"), policy) == []
        decided = (CONDITIONS["screen"][int(screen.argmax())],
                   CONDITIONS["shell"][int(shell.argmax())])
        assert out.grade == policy.grade(*decided, failed, battery)
        assert out.confidence == out.grade_probabilities[out.grade]
        grades_seen.add(out.grade)
    assert grades_seen == set(policy.grades)  # every grade was reached


def test_synthetic_devices_and_random_vectors_through_a_real_bundle(grader, synth_dir):
    """The 24 synthetic devices graded for real, and 1,000 random part-probability vectors
    through the bundle's fusion model and policy: no result contradicts its reasons."""
    from training.manifest import load_manifest

    policy = grader.policy
    grading = grader.manifest.grading.model_dump()  # the bundle's config, as stored
    rows = load_manifest(synth_dir / "manifest.csv").rows
    assert len(rows) == 24
    for row in rows:
        info = row.device_info() or parse_device_info(INFO)
        out = grader.grade(row.front_path, row.back_path, info, "good")
        assert contradictions(out, policy) == [], row.device_id
        assert contradictions(out.model_dump(mode="json"), grading) == []
        assert set(out.return_risk) >= {out.grade, "good"}
    rng = np.random.default_rng(1018)
    for i in range(1000):
        alpha = rng.uniform(0.2, 3.0)
        failed = [c for c in CHECKS if rng.random() < 0.03]
        battery = None if rng.random() < 0.2 else int(rng.integers(50, 101))
        out = _result(policy, grader.fusion, rng.dirichlet([alpha] * 4),
                      rng.dirichlet([alpha] * 4), failed, battery)
        assert contradictions(out, policy) == [], i
