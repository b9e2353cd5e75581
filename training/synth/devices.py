"""Device facts, functional failures, refurbishers and their grades, returns: sampled so
that the workflow and its dashboards can be demonstrated on synthetic data."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np

from fusion.policy import GradingPolicy
from tabular.schema import CHECKS, RETURN_REASONS
from vision.conditions import SCREEN_CONDITIONS, SHELL_CONDITIONS

Rng = np.random.Generator

CATALOGUE: dict[str, list[tuple[str, tuple[int, ...]]]] = {
    "Apple": [("iPhone 11", (64, 128, 256)), ("iPhone 12", (64, 128, 256)),
              ("iPhone 13", (128, 256, 512)), ("iPhone 14 Pro", (128, 256, 512, 1024)),
              ("iPhone SE (2022)", (64, 128, 256))],
    "Samsung": [("Galaxy S21", (128, 256)), ("Galaxy S22", (128, 256)),
                ("Galaxy A52", (128, 256)), ("Galaxy Z Flip4", (128, 256, 512))],
    "Google": [("Pixel 6", (128, 256)), ("Pixel 7", (128, 256)), ("Pixel 7a", (128,))],
    "Xiaomi": [("Redmi Note 11", (64, 128)), ("Xiaomi 12", (128, 256))],
    "OnePlus": [("OnePlus 9", (128, 256)), ("Nord 2", (128, 256))],
}
SCREEN_P = (0.3, 0.22, 0.2, 0.28)
SHELL_P = (0.3, 0.25, 0.22, 0.23)


@dataclass(frozen=True)
class Mix:
    """How often each condition, a functional failure and a weak battery are drawn."""

    screen: tuple[float, ...]
    shell: tuple[float, ...]
    failed_checks: float
    battery_mean: float
    battery_sd: float


#: ``training``: every condition often (the model needs examples of each; about half the
#: devices are broken). ``marketplace``: what a refurbished marketplace lists (mostly
#: excellent and good, some fair, few broken): the demo's seeded history.
MIXES: dict[str, Mix] = {
    "training": Mix(SCREEN_P, SHELL_P, 0.12, 89, 6),
    "marketplace": Mix((0.8, 0.14, 0.03, 0.03), (0.47, 0.45, 0.07, 0.01), 0.02, 91, 4),
}
#: The reasons drawn for a return that no modelled cause explains.
RANDOM_RETURN_REASONS = RETURN_REASONS[:4]


@dataclass(frozen=True)
class Refurbisher:
    """A seller with a grading habit: bias > 0 grades better than the truth (optimistic)."""

    refurbisher_id: str
    bias: float
    noise: float

    @property
    def base_return_rate(self) -> float:
        """Returns without a cosmetic cause (buyer's remorse, undisclosed faults, packaging):
        a sloppy grader (noisy) and an optimistic one (bias > 0) ship more of them."""
        return 0.02 + 0.06 * self.noise + 0.04 * max(0.0, self.bias)


def return_probability(ref: Refurbisher, optimism: int) -> float:
    """P(returned within 30 days) of a device listed ``optimism`` grades better than its true
    grade: the seller's base rate, then most buyers of an overgraded device send it back (one
    grade too good: about 1 in 3; two: 1 in 2)."""
    base = ref.base_return_rate
    return base + (1 - base) * (1 - 0.65 ** optimism) if optimism else base


def sample_refurbishers(rng: Rng, n: int) -> list[Refurbisher]:
    out = []
    for i in range(n):
        bias = float(rng.choice([0.0, 0.0, 0.3, 0.6, 1.0, -0.3]))
        out.append(Refurbisher(f"R{i + 1:03d}", bias, float(rng.uniform(0.2, 0.7))))
    return out


def sample_device(rng: Rng, index: int, policy: GradingPolicy,
                  refurbishers: list[Refurbisher], today: dt.date,
                  mix: Mix = MIXES["training"]) -> dict:
    """One device's manifest row (without photo paths): facts, checks, labels, workflow;
    conditions, failures and batteries drawn as ``mix`` says."""
    brand = str(rng.choice(list(CATALOGUE)))
    model, storages = CATALOGUE[brand][rng.integers(len(CATALOGUE[brand]))]
    screen = str(rng.choice(SCREEN_CONDITIONS, p=mix.screen))
    shell = str(rng.choice(SHELL_CONDITIONS, p=mix.shell))
    checks = dict.fromkeys(CHECKS, True)
    if rng.random() < mix.failed_checks:
        for name in rng.choice(CHECKS, size=int(rng.integers(1, 3)), replace=False):
            checks[str(name)] = False
    battery = int(np.clip(rng.normal(mix.battery_mean, mix.battery_sd), 60, 100))
    grade = policy.grade(screen, shell, [c for c, ok in checks.items() if not ok], battery)

    ref = refurbishers[rng.integers(len(refurbishers))]
    true_rank = policy.rank(grade)
    shift = -ref.bias + rng.normal(0, ref.noise)  # negative rank = better grade
    announced_rank = int(np.clip(round(true_rank + shift), 0, len(policy.grades) - 1))
    announced = policy.grades[announced_rank]
    returned, reason = None, None
    if policy.sellable(announced):
        optimism = max(0, true_rank - announced_rank)
        returned = bool(rng.random() < return_probability(ref, optimism))
        if returned:
            if optimism and rng.random() < 0.85:
                reason = "functional_fault" if checks != dict.fromkeys(CHECKS, True) else (
                    "battery" if battery < 80 else "cosmetic_worse_than_described")
            else:
                reason = str(rng.choice(RANDOM_RETURN_REASONS))
    return {
        "device_id": f"synth-{index:06d}",
        "brand": brand, "model": model, "storage_gb": int(rng.choice(storages)),
        "unlocked": bool(rng.random() < 0.7), "battery_health_pct": battery,
        **checks,
        "screen_condition": screen, "shell_condition": shell, "grade": grade,
        "refurbisher_id": ref.refurbisher_id, "refurbisher_grade": announced,
        "returned": returned, "return_reason": reason,
        "listed_at": (today - dt.timedelta(days=int(rng.integers(0, 90)))).isoformat(),
    }
