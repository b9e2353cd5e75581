"""The fusion layer: part-condition probabilities + checklist -> grade probabilities.

Two steps, both plain numpy (a parameter file, no ONNX graph: the policy is a table lookup
over 4 x 4 condition pairs and the learned part has G + 1 numbers, so numpy is simpler and
exactly the same code runs in training and serving):

1. **Policy marginalisation** (exact, no parameters). For every pair of screen and shell
   conditions the grading policy gives a grade; the grade distribution is the sum of
   ``P(screen) * P(shell)`` over the pairs that give it. Failed checks and a low battery are
   facts, not guesses: they cap every pair. The policy's hard rules therefore always hold:
   a failed check puts all the mass on the failed-check grade, and a cracked part's
   probability is mass on the grade the policy caps it at.
2. **Learned recalibration** (fitted on labelled grades by ``photograde train fusion``):
   ``P(g) ∝ P_policy(g) ** a * exp(b_g)`` over the grades the policy allows (P_policy > 0), so
   it can sharpen or soften the vision model's confidence and correct a systematic lean, but
   never move mass to a grade the rules forbid.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fusion.policy import GradingPolicy
from vision.conditions import SCREEN_CONDITIONS, SHELL_CONDITIONS

EPS = 1e-12


def pair_grades(policy: GradingPolicy, failed_checks: list[str] | tuple[str, ...] = (),
                battery_health_pct: int | None = None) -> np.ndarray:
    """(4, 4) grade rank for each (screen, shell) condition pair under these facts."""
    return np.array([[policy.rank(policy.grade(s, h, failed_checks, battery_health_pct))
                      for h in SHELL_CONDITIONS] for s in SCREEN_CONDITIONS], np.int64)


def policy_distribution(policy: GradingPolicy, screen: np.ndarray | None,
                        shell: np.ndarray | None, failed_checks=(),
                        battery_health_pct: int | None = None) -> np.ndarray:
    """Grade distribution (G,) implied by the policy; an unknown part (None) caps nothing."""
    g = len(policy.grades)
    table = pair_grades(policy, failed_checks, battery_health_pct)
    # an unknown part counts as flawless, the policy's mildest case: it caps nothing
    screen = np.eye(len(SCREEN_CONDITIONS))[0] if screen is None else screen
    shell = np.eye(len(SHELL_CONDITIONS))[0] if shell is None else shell
    joint = np.outer(screen, shell)
    return np.bincount(table.ravel(), weights=joint.ravel(), minlength=g)[:g]


@dataclass
class FusionModel:
    """Learned recalibration on top of the policy distribution (identity when untrained)."""

    grades: tuple[str, ...]
    a: float = 1.0
    b: np.ndarray = field(default_factory=lambda: np.zeros(0))
    metrics: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.b) == 0:
            self.b = np.zeros(len(self.grades))
        self.b = np.asarray(self.b, np.float64)

    def apply(self, p_policy: np.ndarray) -> np.ndarray:
        """Recalibrated distribution(s): (G,) or (N, G)."""
        p = np.atleast_2d(p_policy)
        allowed = p > EPS
        z = np.where(allowed, self.a * np.log(np.clip(p, EPS, None)) + self.b, -np.inf)
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        out = e / e.sum(axis=1, keepdims=True)
        return out[0] if np.ndim(p_policy) == 1 else out

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "policy-marginalisation+power-bias", "grades": list(self.grades),
                "a": self.a, "b": self.b.tolist(), "metrics": self.metrics}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FusionModel:
        return cls(tuple(d["grades"]), float(d["a"]), np.asarray(d["b"]), d.get("metrics", {}))


def fit_fusion(p_policy: np.ndarray, labels: np.ndarray, grades: tuple[str, ...],
               l2: float = 0.01) -> FusionModel:
    """Fit ``a`` and ``b`` by minimising the NLL of the true grades (label = grade rank)."""
    from scipy.optimize import minimize

    n, g = p_policy.shape

    def nll(theta: np.ndarray) -> float:
        m = FusionModel(grades, float(theta[0]), theta[1:])
        p = m.apply(p_policy)[np.arange(n), labels]
        return float(-np.mean(np.log(np.clip(p, EPS, None))) + l2 * np.sum(theta[1:] ** 2))

    res = minimize(nll, np.r_[1.0, np.zeros(g)], method="L-BFGS-B",
                   bounds=[(0.05, 10.0)] + [(-10, 10)] * g)
    return FusionModel(grades, float(res.x[0]), res.x[1:])
