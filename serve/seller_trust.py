"""The seller's trust score at listing time, for the return-risk model (:mod:`tabular.evidence`).

The same score as the dashboards' (:mod:`fusion.trust`), computed as ``train return-risk``
computes it on a history (:mod:`training.tabular_history`): over the last :data:`TRUST_DAYS`
days, the decided evaluations and how many were validated; the returns only of the listings
whose return window (:data:`RETURN_WINDOW`) has closed, so that recent listings, whose returns
have not come in yet, do not flatter the seller. Cached per seller for :data:`CACHE_SECONDS`.
"""

from __future__ import annotations

import datetime as dt
import time

from sqlalchemy import func, select

from serve.dashboard import _market, _per_refurbisher, _priors, _trust_of
from serve.db import Database
from serve.models import Evaluation, ReturnReport, utcnow
from tabular.schema import RETURN_WINDOW_DAYS

TRUST_DAYS = 90
RETURN_WINDOW = dt.timedelta(days=RETURN_WINDOW_DAYS)
CACHE_SECONDS = 60.0


def _closed_listings(db: Database, start: dt.datetime, closed: dt.datetime
                     ) -> dict[str, tuple[int, int]]:
    """Per seller: (listed, returned) of the listings since ``start`` listed before
    ``closed``."""
    E = Evaluation
    where = (E.created_at >= start, E.listed_at.is_not(None), E.listed_at <= closed)
    with db.read() as s:
        listed = dict(s.execute(select(E.refurbisher_id, func.count()).where(*where)
                                .group_by(E.refurbisher_id)).all())
        returned = dict(s.execute(
            select(E.refurbisher_id, func.count(func.distinct(ReturnReport.evaluation_id)))
            .join(E, E.id == ReturnReport.evaluation_id)
            .where(*where, ReturnReport.kind == "return").group_by(E.refurbisher_id)).all())
    return {rid: (int(n), int(returned.get(rid, 0))) for rid, n in listed.items()}


def seller_trust(db: Database, refurbisher_id: str, now: dt.datetime | None = None) -> float:
    """The seller's trust score now (a seller without history scores like the market)."""
    now = now or utcnow()
    start = now - dt.timedelta(days=TRUST_DAYS)
    with db.read() as s:
        per = _per_refurbisher(s, start)
    closed = _closed_listings(db, start, now - RETURN_WINDOW)  # sellers of per's, by its window
    for rid, c in per.items():
        c["listed"], c["returned"] = closed.get(rid, (0, 0))
    return _trust_of(per.get(refurbisher_id, {}), _priors(_market(per)))


class TrustCache:
    """:func:`seller_trust` per seller, recomputed at most every :data:`CACHE_SECONDS`."""

    def __init__(self, db: Database, ttl: float = CACHE_SECONDS):
        self.db, self.ttl = db, ttl
        self._values: dict[str, tuple[float, float]] = {}

    def get(self, refurbisher_id: str) -> float:
        hit = self._values.get(refurbisher_id)
        if hit is not None and time.monotonic() - hit[0] < self.ttl:
            return hit[1]
        value = seller_trust(self.db, refurbisher_id)
        self._values[refurbisher_id] = (time.monotonic(), value)
        return value
