"""The drift window's arithmetic (PSI, the sliding window, a learned reference) and the alert
rules' metric names (each one exported by the service)."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

from serve.drift import EPSILON, CheckWindow, GradeWindow, psi
from serve.metrics import Metrics

GRADES = ("excellent", "good", "fair", "broken")
ALERTS = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "alerts.yml"


def test_psi_is_zero_for_the_same_mix_small_for_noise_and_large_for_a_shift():
    ref = {"excellent": 0.4, "good": 0.3, "fair": 0.2, "broken": 0.1}
    assert psi({"excellent": 40, "good": 30, "fair": 20, "broken": 10}, ref, GRADES) < 1e-12
    assert psi({"excellent": 42, "good": 29, "fair": 19, "broken": 10}, ref, GRADES) < 0.01
    shifted = {"excellent": 10, "good": 20, "fair": 30, "broken": 40}
    by_hand = sum((w - r) * math.log(w / r) for w, r in zip((0.1, 0.2, 0.3, 0.4),
                                                            (0.4, 0.3, 0.2, 0.1), strict=True))
    assert psi(shifted, ref, GRADES) == pytest.approx(by_hand) and by_hand > 0.2
    # a grade the reference never saw weighs by the floor, not infinitely
    only_new = psi({"broken": 5}, {"excellent": 1}, GRADES)
    assert only_new == pytest.approx(2 * (1 - EPSILON) * math.log(1 / EPSILON))


def test_the_window_slides_and_counts_confidence_and_inconclusive_grades():
    w = GradeWindow(GRADES, size=3, min_devices=2, min_confidence=0.5,
                    reference={"excellent": 1.0}, source="bundle")
    w.add("excellent", 0.9, False)
    assert not w.ready and w.psi() is None
    w.add("excellent", 0.3, True)
    assert w.ready and w.psi() == 0
    w.add("broken", 0.6, False)
    w.add("broken", 0.9, False)  # the first one leaves
    assert w.devices == 3 and dict(w.counts) == {"excellent": 1, "broken": 2}
    assert w.confidence_sum == pytest.approx(1.8) and w.inconclusive == 1
    assert w.psi() == pytest.approx(psi({"excellent": 1, "broken": 2}, {"excellent": 1}, GRADES))
    s = w.summary()
    assert s["mean_confidence"] == 0.6 and s["inconclusive_rate"] == pytest.approx(0.3333)
    assert s["reference"]["source"] == "bundle"  # type: ignore[index]


def test_a_bundle_without_reference_learns_it_from_its_first_grades():
    w = GradeWindow(GRADES, size=4, min_devices=2)
    for g in ("good", "good", "fair"):
        w.add(g, 0.8, False)
    ref = w.summary()["reference"]
    assert ref == {"source": "first_served", "devices": 3, "complete": False,
                   "grade_distribution": None, "note": "the bundle has no reference "
                   "distribution: the first 4 grades this process served are the reference "
                   "(3 so far)"}
    assert w.psi() is None  # nothing to compare with yet
    w.add("excellent", 0.8, False)
    assert w.reference == {"good": 0.5, "fair": 0.25, "excellent": 0.25} and w.psi() < 1e-12  # type: ignore[operator]
    for _ in range(4):
        w.add("broken", 0.8, False)
    assert w.reference == {"good": 0.5, "fair": 0.25, "excellent": 0.25}  # learned once
    assert w.psi() > 0.2  # type: ignore[operator]


def test_the_photo_check_window_gives_the_refused_share_per_reason():
    c = CheckWindow(size=4, min_devices=2)
    for reason in ("too_dark", None, "blurry", None, "too_dark"):
        c.add(reason)
    assert c.ready and c.rates(["too_dark", "blurry", "duplicate"]) == {
        "too_dark": 0.25, "blurry": 0.25, "duplicate": 0.0}


def test_every_metric_the_alert_rules_use_is_exported():
    names = {f.name for f in Metrics().registry.collect()}
    used = set(re.findall(r"\b(photograde_[a-z0-9_]+)", ALERTS.read_text()))
    assert len(used) >= 8
    for name in used:
        base = re.sub(r"_(bucket|count|sum|total)$", "", name)
        assert base in names, f"{name} (alerts.yml) is not exported by serve/metrics.py"
