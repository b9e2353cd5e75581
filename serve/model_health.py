"""The model's health from the database, per bundle version: the series of the "Model health"
page (``GET /v1/dashboard/model-health``) and the outcome gauges of ``/metrics``.

Per bucket (ISO week or UTC day of submission) and bundle version: the predicted-grade
distribution, the mean confidence, the inconclusive rate (stored decisions), and the outcomes;
per bucket, the photos the photo check refused by reason (a refusal records no bundle version,
so these are all versions together), as a share of the submissions (refusals + evaluations).

Outcomes, over the evaluations with a final grade (listed: validated, accepted, kept, approved,
overridden; see ``photograde/history.py`` for how far each is trusted):

- **disagreement**: the final grade differs from the model's;
- against the **reviewers' outcomes** (approved or overridden): a **false positive** is a case
  the model graded worse than the reviewer's final grade (damage it saw that is not there: a
  right grade sent to justification or review), a **false negative** one it graded better
  (damage it missed: the costly side, a device listed too high).

Rates are shares of the resolved (disagreement) or reviewed (false positives and negatives)
evaluations, per decision and for all (``decision: all``); None where there are none.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from fastapi.concurrency import run_in_threadpool
from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from serve.db import Database
from serve.metrics import Metrics
from serve.models import DECISIONS, REJECT_REASONS, Evaluation, PhotoRejection, utcnow

log = logging.getLogger("photograde.serve")

BUCKETS = ("week", "day")
REVIEWED = ("approved", "overridden")
ALL = "all"


@dataclass
class Tally:
    """Outcome counts of a group of evaluations with a final grade."""

    resolved: int = 0
    disagree: int = 0
    reviewed: int = 0
    false_positive: int = 0
    false_negative: int = 0

    def add(self, n: int, predicted: str, final: str, reviewed: bool,
            rank: dict[str, int]) -> None:
        self.resolved += n
        self.disagree += n * (predicted != final)
        if reviewed:
            self.reviewed += n
            if predicted in rank and final in rank:  # a grade of another scale: no side
                self.false_positive += n * (rank[predicted] > rank[final])
                self.false_negative += n * (rank[predicted] < rank[final])

    def figures(self) -> dict[str, Any]:
        return {"resolved": self.resolved, "reviewed": self.reviewed,
                "disagreement_rate": rate(self.disagree, self.resolved),
                "false_positive_rate": rate(self.false_positive, self.reviewed),
                "false_negative_rate": rate(self.false_negative, self.reviewed)}


def rate(num: float, den: float) -> float | None:
    return round(num / den, 4) if den else None


def _day(value: Any) -> dt.date:
    return value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value)[:10])


def bucket_of(value: Any, bucket: str) -> dt.date:
    """The first day of the bucket (ISO week: Monday) of a date (or SQLite's date text)."""
    d = _day(value)
    return d - dt.timedelta(days=d.weekday()) if bucket == "week" else d


def bucket_starts(start: dt.datetime, end: dt.datetime, bucket: str) -> list[dt.date]:
    step = dt.timedelta(days=7 if bucket == "week" else 1)
    d, last, out = bucket_of(start.date(), bucket), bucket_of(end.date(), bucket), []
    while d <= last:
        out.append(d)
        d += step
    return out


def bucket_label(d: dt.date, bucket: str) -> str:
    if bucket == "day":
        return d.isoformat()
    year, week, _ = d.isocalendar()
    return f"{year}-W{week:02d}"


def _outcome_rows(s: Session, start: dt.datetime) -> list[Any]:
    """(day, version, decision, predicted, final, resolution, n) of the evaluations submitted
    since ``start`` with a final grade."""
    E = Evaluation
    cols = (func.date(E.created_at), E.bundle_version, E.decision, E.predicted_grade,
            E.final_grade, E.resolution)
    return list(s.execute(select(*cols, func.count())
                          .where(E.created_at >= start, E.final_grade.is_not(None))
                          .group_by(*cols)).all())


def outcome_figures(db: Database, grades: Sequence[str], days: int,
                    now: dt.datetime | None = None) -> dict[tuple[str, str], dict[str, Any]]:
    """The outcome figures by (bundle version, decision or ``all``) over the evaluations
    submitted in the last ``days`` days (what the ``/metrics`` outcome gauges show)."""
    start = (now or utcnow()) - dt.timedelta(days=days)
    rank = {g: i for i, g in enumerate(grades)}
    tallies: dict[tuple[str, str], Tally] = defaultdict(Tally)
    with db.read() as s:
        rows = _outcome_rows(s, start)
    for _, version, decision, predicted, final, resolution, n in rows:
        for key in ((version, decision), (version, ALL)):
            tallies[key].add(n, predicted, final, resolution in REVIEWED, rank)
    return {key: t.figures() for key, t in tallies.items()}


def _count_if(cond: Any) -> Any:
    return func.sum(case((cond, 1), else_=0))


def _grade_rows(s: Session, start: dt.datetime) -> list[Any]:
    E = Evaluation
    day = func.date(E.created_at)
    return list(s.execute(select(day, E.bundle_version, E.predicted_grade, func.count(),
                                 func.sum(E.confidence), _count_if(E.decision == "inconclusive"))
                          .where(E.created_at >= start)
                          .group_by(day, E.bundle_version, E.predicted_grade)).all())


def _rejection_rows(s: Session, start: dt.datetime) -> list[Any]:
    R = PhotoRejection
    day = func.date(R.created_at)
    return list(s.execute(select(day, R.reason, func.count()).where(R.created_at >= start)
                          .group_by(day, R.reason)).all())


@dataclass
class _Cell:
    """One bundle version in one bucket (or over the whole window)."""

    grades: Counter
    evaluations: int = 0
    confidence: float = 0.0
    inconclusive: int = 0

    def figures(self, scale: Sequence[str]) -> dict[str, Any]:
        n = self.evaluations
        known = [*scale, *sorted(set(self.grades) - set(scale))]  # grades of another scale last
        return {"evaluations": n, "grades": {g: self.grades[g] for g in known},
                "mean_confidence": rate(self.confidence, n),
                "inconclusive_rate": rate(self.inconclusive, n)}


def _cell() -> _Cell:
    return _Cell(Counter())


def _version_table(cells: dict[str, _Cell], outcomes: dict[tuple[str, str], Tally],
                   first: dict[str, dt.date], last: dict[str, dt.date], scale: Sequence[str]
                   ) -> list[dict[str, Any]]:
    """Per bundle version over the window: its figures, outcomes per decision, first and last
    bucket seen; the first seen first."""
    out = []
    for v in sorted(cells, key=lambda v: (first[v], v)):
        f = cells[v].figures(scale)
        n = f["evaluations"]
        out.append({"bundle_version": v, "first_seen": first[v].isoformat(),
                    "last_seen": last[v].isoformat(), **f,
                    "grade_distribution": {g: rate(c, n) for g, c in f["grades"].items()},
                    "outcomes": outcomes[(v, ALL)].figures(),
                    "outcomes_by_decision": {d: outcomes[(v, d)].figures() for d in DECISIONS}})
    return out


def _rejections(rows: Iterable[Any], evaluations: Counter, starts: list[dt.date],
                bucket: str) -> list[dict[str, Any]]:
    reasons: dict[dt.date, Counter] = defaultdict(Counter)
    for day, reason, n in rows:
        reasons[bucket_of(day, bucket)][reason] += n
    out = []
    for b in starts:
        refused = sum(reasons[b].values())
        out.append({"bucket": bucket_label(b, bucket), "start": b.isoformat(),
                    "rejected": refused, "submitted": refused + evaluations[b],
                    "rejection_rate": rate(refused, refused + evaluations[b]),
                    "reasons": {r: reasons[b][r] for r in REJECT_REASONS}})
    return out


def model_health(db: Database, grades: Sequence[str], days: int = 30, bucket: str = "week",
                 now: dt.datetime | None = None) -> dict[str, Any]:
    """The model-health series over the last ``days`` days in ``bucket`` buckets (``week``:
    ISO weeks, ``day``: UTC days), per bundle version; ``grades``: the scale, best first."""
    if bucket not in BUCKETS:
        raise ValueError(f"bucket: {bucket!r}, expected one of {', '.join(BUCKETS)}")
    end = now or utcnow()
    start = end - dt.timedelta(days=days)
    with db.read() as s:
        grade_rows, outcome_rows = _grade_rows(s, start), _outcome_rows(s, start)
        rejection_rows = _rejection_rows(s, start)
    starts = bucket_starts(start, end, bucket)
    cells: dict[tuple[str, dt.date], _Cell] = defaultdict(_cell)
    totals: dict[str, _Cell] = defaultdict(_cell)
    first: dict[str, dt.date] = {}
    last: dict[str, dt.date] = {}
    per_bucket: Counter = Counter()
    for day, version, grade, n, confidence, inconclusive in grade_rows:
        b = bucket_of(day, bucket)
        for c in (cells[(version, b)], totals[version]):
            c.grades[grade] += n
            c.evaluations += n
            c.confidence += float(confidence or 0)
            c.inconclusive += int(inconclusive or 0)
        per_bucket[b] += n
        first[version], last[version] = min(first.get(version, b), b), max(last.get(version, b), b)
    rank = {g: i for i, g in enumerate(grades)}
    outcomes: dict[tuple[str, Any], Tally] = defaultdict(Tally)
    for day, version, decision, predicted, final, resolution, n in outcome_rows:
        b = bucket_of(day, bucket)
        for key in ((version, b), (version, decision), (version, ALL)):
            outcomes[key].add(n, predicted, final, resolution in REVIEWED, rank)
    versions = _version_table(totals, outcomes, first, last, grades)
    return {
        "days": days, "from": start.isoformat(), "to": end.isoformat(), "bucket": bucket,
        "grades": list(grades), "reasons": list(REJECT_REASONS),
        "buckets": [{"bucket": bucket_label(b, bucket), "start": b.isoformat()} for b in starts],
        "versions": versions,
        "series": {v["bundle_version"]: [
            {"bucket": bucket_label(b, bucket), "start": b.isoformat(),
             **cells[(v["bundle_version"], b)].figures(grades),
             **outcomes[(v["bundle_version"], b)].figures()} for b in starts]
            for v in versions},
        "photo_rejections": _rejections(rejection_rows, per_bucket, starts, bucket),
    }


class OutcomeMonitor:
    """Keeps the ``/metrics`` outcome gauges of one worker fresh: computed from the database
    at start-up, then every ``interval`` seconds (one grouped query over an indexed window)."""

    def __init__(self, db: Database, metrics: Metrics, days: int, interval: float):
        self.db, self.metrics, self.days, self.interval = db, metrics, days, interval
        self.task: asyncio.Task | None = None

    def refresh(self, grades: Sequence[str]) -> None:
        self.metrics.set_outcomes(outcome_figures(self.db, grades, self.days))

    async def start(self, grades: Callable[[], Sequence[str]]) -> None:
        """Refresh now, then every ``interval`` seconds; ``grades``: the serving scale."""
        await run_in_threadpool(self.refresh, grades())
        self.task = asyncio.create_task(self._loop(grades))

    async def _loop(self, grades: Callable[[], Sequence[str]]) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await run_in_threadpool(self.refresh, grades())
            except Exception:  # a database hiccup must not end the loop; the next one retries
                log.exception("model health: the outcome gauges were not refreshed")

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
