"""The seller's trust score at each listing of a history (a manifest), for the return-risk
model: computed as the service computes it (:func:`fusion.trust.trust_score`) from what was
known on the day of the listing.

For a listing on day ``t`` by refurbisher ``r``: the evaluations are ``r``'s earlier listings
(validated when the model's most likely grade is the announced one); the returns count only the
earlier listings whose return window (30 days) had closed by ``t``, so that no return known
later leaks into the score. The market's shares over the same history are the prior.
Listings without a refurbisher or date get None (unknown).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from fusion.policy import GradingPolicy
from fusion.trust import trust_score
from tabular.evidence import Evidence
from tabular.schema import RETURN_WINDOW_DAYS
from training.manifest import ManifestRow

RETURN_WINDOW = dt.timedelta(days=RETURN_WINDOW_DAYS)


@dataclass
class _Events:
    """A seller's (or the market's) evaluation days with the running count of validated
    grades, and the days their return windows closed with the running count of returns."""

    days: np.ndarray
    validated: np.ndarray
    closed: np.ndarray
    returned: np.ndarray

    @staticmethod
    def of(items: list[tuple[dt.date, bool, bool]]) -> _Events:
        by_day = sorted(items)
        by_close = sorted((d + RETURN_WINDOW, r) for d, _, r in items)
        return _Events(np.array([d for d, _, _ in by_day], dtype="datetime64[D]"),
                       np.cumsum([0] + [int(v) for _, v, _ in by_day]),
                       np.array([c for c, _ in by_close], dtype="datetime64[D]"),
                       np.cumsum([0] + [int(r) for _, r in by_close]))

    def counts(self, day: dt.date) -> tuple[int, int, int, int]:
        """(validated, evaluations, returned, listed) known before ``day``."""
        n = int(np.searchsorted(self.days, np.datetime64(day, "D"), side="left"))
        m = int(np.searchsorted(self.closed, np.datetime64(day, "D"), side="right"))
        return int(self.validated[n]), n, int(self.returned[m]), m


def _validated(ev: Evidence | None, announced: str, policy: GradingPolicy) -> bool:
    return ev is not None and ev.grades is not None and (
        policy.grades[int(np.argmax(ev.grades))] == announced)


def trust_at_listing(rows: Sequence[ManifestRow], evidence: Mapping[str, Evidence],
                     policy: GradingPolicy) -> list[float | None]:
    """Each row's seller trust score on its listing day (None: no seller or date)."""
    per: dict[str, list[tuple[dt.date, bool, bool]]] = defaultdict(list)
    for r in rows:
        if r.refurbisher_id and r.listed_at and r.refurbisher_grade:
            per[r.refurbisher_id].append(
                (r.listed_at, _validated(evidence.get(r.device_id), r.refurbisher_grade, policy),
                 bool(r.returned)))
    events = {rid: _Events.of(items) for rid, items in per.items()}
    market = _Events.of([e for items in per.values() for e in items])
    out: list[float | None] = []
    for r in rows:
        if r.refurbisher_id not in events or r.listed_at is None:
            out.append(None)
            continue
        mv, md, mr, ml = market.counts(r.listed_at)
        v, d, ret, listed = events[r.refurbisher_id].counts(r.listed_at)
        out.append(trust_score(v, d, ret, listed, mv / md if md else 0.0,
                               mr / ml if ml else 0.0))
    return out
