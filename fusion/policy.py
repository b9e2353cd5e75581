"""The grade scale, the grading policy and the decision rules, loaded from a TOML config.

The policy is data: each part condition allows a best grade, failed functional checks and a
low battery cap the grade, and the worst cap wins. The decision compares the refurbisher's grade
with the predicted one by the number of steps between them, unless the evidence is weak: below
``min_confidence`` (the grade's calibrated probability) the decision is ``inconclusive`` and a
reviewer decides.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import Any

from vision.conditions import CONDITIONS
from vision.errors import PhotogradeError

BUILTIN_CONFIGS = ("marketplace", "ctia")
DEFAULT_CONFIG = "marketplace"


class ConfigError(PhotogradeError):
    """A grading config is invalid; the message names the bad key."""


class GradeError(PhotogradeError):
    """A grade is not on the grading config's scale."""


class Decision(StrEnum):
    VALIDATED = "validated"
    SUGGESTION = "suggestion"
    JUSTIFICATION_REQUIRED = "justification_required"
    INCONCLUSIVE = "inconclusive"  # the evidence is too weak: a reviewer decides


@dataclass(frozen=True)
class Cap:
    """One rule that limits the grade: which rule, why, and the best grade it allows."""

    rule: str
    detail: str
    grade: str


@dataclass(frozen=True)
class GradingPolicy:
    """A validated grading config."""

    name: str
    grades: tuple[str, ...]  # best to worst
    not_sellable: frozenset[str]
    part_caps: dict[str, dict[str, str]]  # part -> condition -> best allowed grade
    failed_check: str
    min_battery_health_pct: int | None
    low_battery: str | None
    validated_max_gap: int
    suggestion_max_gap: int
    min_confidence: float = 0.0  # below it the decision is inconclusive (0: never)

    # -- scale --------------------------------------------------------------------------
    def rank(self, grade: str) -> int:
        """0 for the best grade; raises GradeError naming an unknown grade."""
        try:
            return self.grades.index(grade)
        except ValueError:
            raise GradeError(
                f"unknown grade {grade!r}; this scale ({self.name}) has {', '.join(self.grades)}"
            ) from None

    def worst(self, *grades: str) -> str:
        return max(grades, key=self.rank)

    def sellable(self, grade: str) -> bool:
        return grade not in self.not_sellable

    # -- policy -------------------------------------------------------------------------
    def caps(
        self,
        screen: str | None = None,
        shell: str | None = None,
        failed_checks: list[str] | tuple[str, ...] = (),
        battery_health_pct: int | None = None,
    ) -> list[Cap]:
        """Every rule that limits the grade for these facts (unknown parts cap nothing)."""
        out = []
        for part, cond in (("screen", screen), ("shell", shell)):
            if cond is not None:
                out.append(Cap(part, cond, self.part_caps[part][cond]))
        if failed_checks:
            out.append(Cap("failed_checks", ", ".join(failed_checks), self.failed_check))
        if (
            self.min_battery_health_pct is not None
            and self.low_battery is not None
            and battery_health_pct is not None
            and battery_health_pct < self.min_battery_health_pct
        ):
            out.append(Cap("battery", f"{battery_health_pct}% < {self.min_battery_health_pct}%",
                           self.low_battery))
        return out

    def grade(
        self,
        screen: str | None = None,
        shell: str | None = None,
        failed_checks: list[str] | tuple[str, ...] = (),
        battery_health_pct: int | None = None,
    ) -> str:
        """The grade the policy gives: the worst of all caps (the best grade if none)."""
        caps = self.caps(screen, shell, failed_checks, battery_health_pct)
        return self.worst(self.grades[0], *(c.grade for c in caps))

    # -- decision -----------------------------------------------------------------------
    def gap(self, refurbisher_grade: str, predicted_grade: str) -> int:
        """Steps between two grades (always >= 0)."""
        return abs(self.rank(refurbisher_grade) - self.rank(predicted_grade))

    def conclusive(self, confidence: float | None) -> bool:
        """Whether a grade of this confidence is decided (None: no confidence, decided)."""
        return confidence is None or confidence >= self.min_confidence

    def decide(self, refurbisher_grade: str, predicted_grade: str,
               confidence: float | None = None) -> Decision:
        """From the gap; ``inconclusive`` when the grade's ``confidence`` is below
        ``min_confidence``, whatever the gap."""
        gap = self.gap(refurbisher_grade, predicted_grade)
        if not self.conclusive(confidence):
            return Decision.INCONCLUSIVE
        if gap <= self.validated_max_gap:
            return Decision.VALIDATED
        if gap <= self.suggestion_max_gap:
            return Decision.SUGGESTION
        return Decision.JUSTIFICATION_REQUIRED

    def to_dict(self) -> dict[str, Any]:
        """The config as a TOML-shaped dict (round-trips through :func:`policy_from_dict`)."""
        policy: dict[str, Any] = {"failed_check": self.failed_check, **self.part_caps}
        if self.min_battery_health_pct is not None:
            policy["min_battery_health_pct"] = self.min_battery_health_pct
            policy["low_battery"] = self.low_battery
        return {
            "scale": {"name": self.name, "grades": list(self.grades),
                      "not_sellable": sorted(self.not_sellable, key=self.rank)},
            "policy": policy,
            "decision": {"validated_max_gap": self.validated_max_gap,
                         "suggestion_max_gap": self.suggestion_max_gap,
                         **({"min_confidence": self.min_confidence}
                            if self.min_confidence else {})},
        }


def _take(section: dict, key: str, where: str, kind: type | tuple[type, ...], default: Any = ...):
    if key not in section:
        if default is ...:
            raise ConfigError(f"{where}.{key}: missing")
        return default
    value = section[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise ConfigError(f"{where}.{key}: expected {names}, got {value!r}")
    return value


def _check_keys(section: dict, allowed: set[str], where: str) -> None:
    unknown = sorted(set(section) - allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}")


def policy_from_dict(data: dict[str, Any]) -> GradingPolicy:
    """Validate a config dict; raises ConfigError naming the first bad key."""
    _check_keys(data, {"scale", "policy", "decision"}, "config")
    scale = _take(data, "scale", "config", dict)
    _check_keys(scale, {"name", "grades", "not_sellable"}, "scale")
    name = _take(scale, "name", "scale", str)
    grades = _take(scale, "grades", "scale", list)
    if len(grades) < 2 or not all(isinstance(g, str) and g for g in grades):
        raise ConfigError("scale.grades: expected a list of at least two grade names")
    if len(set(grades)) != len(grades):
        raise ConfigError("scale.grades: duplicate grade names")

    def grade_at(value: Any, where: str) -> str:
        if value not in grades:
            raise ConfigError(f"{where}: {value!r} is not a grade of the scale "
                              f"({', '.join(grades)})")
        return value

    not_sellable = _take(scale, "not_sellable", "scale", list, [])
    for i, g in enumerate(not_sellable):
        grade_at(g, f"scale.not_sellable[{i}]")

    pol = _take(data, "policy", "config", dict)
    _check_keys(pol, {"failed_check", "min_battery_health_pct", "low_battery", *CONDITIONS},
                "policy")
    part_caps: dict[str, dict[str, str]] = {}
    for part, classes in CONDITIONS.items():
        table = _take(pol, part, "policy", dict)
        _check_keys(table, set(classes), f"policy.{part}")
        part_caps[part] = {c: grade_at(_take(table, c, f"policy.{part}", str), f"policy.{part}.{c}")
                           for c in classes}
    failed_check = grade_at(_take(pol, "failed_check", "policy", str), "policy.failed_check")
    min_battery = _take(pol, "min_battery_health_pct", "policy", int, None)
    if min_battery is not None and not 0 <= min_battery <= 100:
        raise ConfigError("policy.min_battery_health_pct: expected 0 to 100")
    low_battery = _take(pol, "low_battery", "policy", str, None)
    if (min_battery is None) != (low_battery is None):
        raise ConfigError("policy: min_battery_health_pct and low_battery go together")
    if low_battery is not None:
        grade_at(low_battery, "policy.low_battery")

    dec = _take(data, "decision", "config", dict)
    _check_keys(dec, {"validated_max_gap", "suggestion_max_gap", "min_confidence"}, "decision")
    vmax = _take(dec, "validated_max_gap", "decision", int)
    smax = _take(dec, "suggestion_max_gap", "decision", int)
    if not 0 <= vmax <= smax:
        raise ConfigError("decision: need 0 <= validated_max_gap <= suggestion_max_gap")
    min_conf = _take(dec, "min_confidence", "decision", (int, float), 0.0)
    if isinstance(min_conf, bool) or not 0 <= min_conf < 1:
        raise ConfigError(f"decision.min_confidence: expected a number in [0, 1), got "
                          f"{min_conf!r}")
    return GradingPolicy(name, tuple(grades), frozenset(not_sellable), part_caps, failed_check,
                         min_battery, low_battery, vmax, smax, float(min_conf))


def load_policy(source: str | Path | None = None) -> GradingPolicy:
    """Load a grading config: a built-in name (``marketplace``, ``ctia``), a TOML path, or None
    for the default. Raises ConfigError naming the file and the bad key."""
    source = DEFAULT_CONFIG if source is None else source
    if isinstance(source, str) and source in BUILTIN_CONFIGS:
        text = resources.files("fusion").joinpath("configs", f"{source}.toml").read_text()
        where = f"built-in config {source!r}"
    else:
        path = Path(source)
        if not path.is_file():
            raise ConfigError(f"grading config {str(path)!r} not found "
                              f"(built-in names: {', '.join(BUILTIN_CONFIGS)})")
        text, where = path.read_text(), str(path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{where}: not valid TOML: {e}") from None
    try:
        return policy_from_dict(data)
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None
