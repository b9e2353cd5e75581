"""Drift of the served grades, per bundle version, over sliding windows of this process.

**Population stability index** of the last ``size`` graded devices against the bundle's
reference distribution::

    PSI = sum over grades (w - r) * ln(w / r)

with ``w`` the window's share of a grade and ``r`` the reference's, each floored at
:data:`EPSILON` (a grade absent on one side would weigh infinitely). The usual reading: under
0.1 stable, 0.1 to 0.2 a moderate shift, over 0.2 a shift worth a look (the alert's threshold).

**The reference** is the bundle manifest's ``reference.grade_distribution``: the grades it
predicted on its held-out evaluation (``train release`` writes it, ``evaluate bundle
--set-reference`` adds it to an existing bundle). A bundle without one learns it: the first
``size`` grades this process serves become the reference (``source: first_served``, reported
by ``/v1/model``), so drift is measured against how the service started, and a restart learns
it again.

The same window gives the mean confidence and the share of grades below the bundle's
``min_confidence`` (inconclusive); a second window of the last ``size`` photo checks gives the
share refused, by reason. A window's figures are published once it holds ``min_devices``.
"""

from __future__ import annotations

import math
from collections import Counter, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

EPSILON = 1e-4


def shares(counts: Mapping[str, float]) -> dict[str, float]:
    """Counts as shares of their total (empty: no shares)."""
    total = sum(counts.values())
    return {k: v / total for k, v in counts.items()} if total else {}


def psi(window: Mapping[str, float], reference: Mapping[str, float],
        grades: Sequence[str]) -> float:
    """The population stability index of ``window`` against ``reference`` (counts or shares,
    each normalised) over ``grades``."""
    w, r = shares(window), shares(reference)
    total = 0.0
    for g in grades:
        a, b = max(w.get(g, 0.0), EPSILON), max(r.get(g, 0.0), EPSILON)
        total += (a - b) * math.log(a / b)
    return total


@dataclass
class GradeWindow:
    """The last ``size`` grades of one bundle version and what they are compared with."""

    grades: tuple[str, ...]
    size: int
    min_devices: int
    min_confidence: float | None = None  # None: inconclusive only from a result's decision
    reference: dict[str, float] | None = None  # shares; None while it is being learned
    source: str = "first_served"  # or "bundle": the manifest's reference
    reference_devices: int = 0
    learned: Counter = field(default_factory=Counter)
    recent: deque = field(default_factory=deque)  # (grade, confidence, inconclusive)
    counts: Counter = field(default_factory=Counter)
    confidence_sum: float = 0.0
    inconclusive: int = 0

    def add(self, grade: str, confidence: float, inconclusive: bool) -> None:
        if self.reference is None:
            self.learned[grade] += 1
            if sum(self.learned.values()) >= self.size:
                self.reference = shares(self.learned)
                self.reference_devices = self.size
        self.recent.append((grade, confidence, inconclusive))
        self.counts[grade] += 1
        self.confidence_sum += confidence
        self.inconclusive += inconclusive
        if len(self.recent) > self.size:
            old, old_confidence, old_inconclusive = self.recent.popleft()
            self.counts[old] -= 1
            self.confidence_sum -= old_confidence
            self.inconclusive -= old_inconclusive

    @property
    def devices(self) -> int:
        return len(self.recent)

    @property
    def ready(self) -> bool:
        """Whether the window holds enough devices for its figures to mean something."""
        return self.devices >= self.min_devices

    def psi(self) -> float | None:
        """The window's PSI against the reference (None: too few devices, or no reference)."""
        if self.reference is None or not self.ready:
            return None
        return psi(self.counts, self.reference, self.grades)

    def note(self) -> str:
        """Where the reference comes from, in words."""
        if self.source == "bundle":
            return "the bundle's predicted grades on its held-out evaluation"
        learned = sum(self.learned.values())
        done = ("they are" if self.reference is not None else f"{learned} so far")
        return (f"the bundle has no reference distribution: the first {self.size} grades this "
                f"process served are the reference ({done})")

    def summary(self) -> dict[str, object]:
        """What ``/v1/model`` and the model-health page show of this window."""
        n, ref = self.devices, self.reference
        return {"window_size": self.size, "devices": n, "min_devices": self.min_devices,
                "psi": _round(self.psi()),
                "grade_distribution": {g: round(self.counts[g] / n, 4) for g in self.grades}
                if n else {},
                "mean_confidence": _round(self.confidence_sum / n if n else None),
                "inconclusive_rate": _round(self.inconclusive / n if n else None),
                "reference": {
                    "source": self.source, "note": self.note(), "complete": ref is not None,
                    "devices": self.reference_devices if ref is not None
                    else sum(self.learned.values()),
                    "grade_distribution": None if ref is None
                    else {g: round(ref.get(g, 0.0), 4) for g in self.grades}}}


@dataclass
class CheckWindow:
    """The last ``size`` photo checks of one bundle version: passed (None) or a refusal's
    reason."""

    size: int
    min_devices: int
    recent: deque = field(default_factory=deque)
    counts: Counter = field(default_factory=Counter)

    def add(self, reason: str | None) -> None:
        self.recent.append(reason)
        self.counts[reason] += 1
        if len(self.recent) > self.size:
            self.counts[self.recent.popleft()] -= 1

    @property
    def ready(self) -> bool:
        return len(self.recent) >= self.min_devices

    def rates(self, reasons: Sequence[str]) -> dict[str, float]:
        """The share of the window's checks refused, per reason."""
        n = len(self.recent)
        return {r: self.counts[r] / n for r in reasons} if n else {}


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)
