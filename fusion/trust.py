"""The refurbisher's trust score (0-100): a Bayesian-smoothed mix of how often their grade is
validated and how rarely their devices come back::

    v = (validated + m * V) / (decided + m)       # smoothed share of validated grades
    r = (returned + m * R) / (listed + m)         # smoothed return rate
    trust = 100 * (0.5 * v + 0.5 * max(0, 1 - r / R_MAX))

``decided`` counts the evaluations the model did not find inconclusive. ``V`` and ``R`` are the
whole market's share of validated grades and return rate (the prior), ``m = 20``
pseudo-evaluations is the prior's weight and ``R_MAX = 0.25`` is the return rate that scores
zero. The dashboards (:mod:`serve.dashboard`) show it; the return-risk model reads it at listing
time (:mod:`tabular.evidence`).
"""

from __future__ import annotations

PRIOR_WEIGHT = 20.0
R_MAX = 0.25


def trust_score(validated: int, evaluations: int, returned: int, listed: int,
                market_validated: float, market_return: float,
                m: float = PRIOR_WEIGHT) -> float:
    """The trust score, rounded to 0.1 (``evaluations``: the decided ones)."""
    v = (validated + m * market_validated) / (evaluations + m)
    r = (returned + m * market_return) / (listed + m)
    return round(100 * (0.5 * v + 0.5 * max(0.0, 1 - r / R_MAX)), 1)
