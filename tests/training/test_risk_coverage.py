"""Risk-coverage: accuracy of the decided items against their share, and the threshold for a
target accuracy (abstention)."""

from __future__ import annotations

import numpy as np
import pytest

from training.metrics import risk_coverage, threshold_for_accuracy

CONF = np.array([0.95, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3])
OK = np.array([1, 1, 1, 0, 1, 0, 1, 0], bool)


def test_curve_is_accuracy_of_the_most_confident_share() -> None:
    rc = risk_coverage(CONF, OK, points=101)
    assert rc["n"] == 8 and rc["accuracy"] == pytest.approx(5 / 8)
    assert rc["curve"]["coverage"] == pytest.approx([k / 8 for k in range(1, 9)])
    assert rc["curve"]["accuracy"][:4] == pytest.approx([1, 1, 1, 0.75])
    assert rc["curve"]["accuracy"][-1] == pytest.approx(5 / 8)
    expected = np.mean(np.cumsum(OK) / np.arange(1, 9))
    assert rc["area"] == pytest.approx(expected) and rc["aurc"] == pytest.approx(1 - expected)
    at = {a["threshold"]: a for a in rc["at_threshold"]}
    assert at[0.8]["coverage"] == pytest.approx(3 / 8) and at[0.8]["accuracy"] == 1.0
    assert at[0.5]["coverage"] == pytest.approx(6 / 8)
    assert at[0.5]["accuracy"] == pytest.approx(4 / 6)


def test_threshold_for_accuracy_is_the_lowest_that_reaches_it() -> None:
    assert threshold_for_accuracy(CONF, OK, 0.9) == {"threshold": 0.8, "coverage": 3 / 8,
                                                     "accuracy": 1.0}
    t = threshold_for_accuracy(CONF, OK, 0.8)  # 0.6: 4 of 5 right
    assert t is not None and t["threshold"] == 0.6 and t["accuracy"] == pytest.approx(0.8)
    assert threshold_for_accuracy(CONF, OK, 0.6)["threshold"] == 0.0  # all decided: 5/8
    assert threshold_for_accuracy(CONF, np.zeros(8, bool), 0.5) is None


def test_ties_are_decided_together() -> None:
    conf = np.array([0.9, 0.7, 0.7, 0.5])
    ok = np.array([1, 1, 0, 1], bool)
    assert threshold_for_accuracy(conf, ok, 0.9)["coverage"] == 0.25  # 0.7 takes both
    rc = risk_coverage(conf, ok)
    assert rc["curve"]["coverage"] == pytest.approx([0.25, 0.75, 1.0])


def test_empty() -> None:
    assert risk_coverage(np.array([]), np.array([], bool)) == {"n": 0}
    assert threshold_for_accuracy(np.array([]), np.array([], bool), 0.9) is None
