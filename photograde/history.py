"""The workflow's history as data: the evaluations of a period, read page by page, and the final
grade each one establishes, the truth that ``dataset export`` and ``backtest`` use.

Truth, most trusted first (one evaluation has one resolution, so the order is how much each
source is trusted, reported per source):

1. ``override`` / ``approve``: a reviewer looked at the case (the justification and its extra
   photos, or the inconclusive reason) and set the grade (override) or confirmed the
   refurbisher's (approve). The only grade decided by quality staff with more evidence.
2. ``validated``: the refurbisher's grade, given before seeing the model's, equals the model's:
   two independent judgments agree.
3. ``accepted``: the refurbisher accepted the model's suggested grade (one step away). The
   refurbisher saw the device and did not object, but the grade is the model's own.
4. ``kept``: the refurbisher kept their grade against the model's suggestion, and the device was
   not returned within the return window. A return within the window (any reason: the buyer's
   reason is not verified) leaves the grade out (``kept_returned``), and so does a window not
   over yet (``kept_window_open``): the row stays for the return-risk model.

Evaluations not listed yet (a suggestion unanswered, a justification missing or under review,
an inconclusive case no reviewer has decided) establish nothing and are counted as skipped.

``returned`` is a return (not a claim) within ``window_days`` of the listing; unknown (None)
while the window is open and nothing was returned.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass

from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import and_, func, or_, select
from sqlalchemy.sql import Select

from serve.db import Database, alembic_config
from serve.models import Evaluation
from tabular.schema import CHECKS, RETURN_WINDOW_DAYS, DeviceInfo
from vision.errors import PhotogradeError

#: Sources of a final grade used as truth, most trusted first.
TRUTH_SOURCES = ("override", "approve", "validated", "accepted", "kept")
#: Listed evaluations whose grade is not used as truth (their rows still count for returns).
NOT_TRUTH = ("kept_returned", "kept_window_open")
RESOLUTION_SOURCE = {"overridden": "override", "approved": "approve", "validated": "validated",
                     "accepted": "accepted", "kept": "kept"}


class HistoryError(PhotogradeError):
    """A bad period, or a database the command cannot read."""


@dataclass(frozen=True)
class Truth:
    """What a listed evaluation establishes: the final grade used as truth (None: not used,
    see ``source``), where it comes from, and whether the device was returned."""

    grade: str | None
    source: str  # one of TRUTH_SOURCES or NOT_TRUTH
    returned: bool | None
    return_reason: str | None


def parse_when(text: str | None, option: str) -> dt.datetime | None:
    """``YYYY-MM-DD`` (midnight UTC) or an ISO datetime (UTC without an offset)."""
    if text is None:
        return None
    try:
        t = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise HistoryError(f"{option}: expected a date (YYYY-MM-DD) or an ISO datetime, got "
                           f"{text!r}") from None
    return t if t.tzinfo else t.replace(tzinfo=dt.UTC)


def check_period(since: dt.datetime | None, until: dt.datetime | None) -> None:
    if since is not None and until is not None and since >= until:
        raise HistoryError(f"--since ({since.isoformat()}) must be before --until "
                           f"({until.isoformat()})")


def open_database(url: str) -> Database:
    """The workflow database, read as it is: refused (with the command that fixes it) when its
    schema is not the latest, rather than migrated by a command that only reads."""
    db = Database(url)
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    with db.engine.connect() as conn:
        current = MigrationContext.configure(conn).get_current_revision()
    if current != head:
        db.dispose()
        where = db.url.render_as_string(hide_password=True)
        raise HistoryError(f"{where}: schema {current or 'empty'}, expected {head}: not a "
                           "photograde database, or run photograde db upgrade first")
    return db


def in_period(q: Select, since: dt.datetime | None, until: dt.datetime | None) -> Select:
    if since is not None:
        q = q.where(Evaluation.created_at >= since)
    if until is not None:
        q = q.where(Evaluation.created_at < until)
    return q


def count_evaluations(db: Database, since: dt.datetime | None = None,
                      until: dt.datetime | None = None) -> int:
    with db.read() as s:
        return int(s.scalar(in_period(select(func.count(Evaluation.id)), since, until)) or 0)


def iter_evaluations(db: Database, since: dt.datetime | None = None,
                     until: dt.datetime | None = None, page: int = 500
                     ) -> Iterator[Evaluation]:
    """Evaluations submitted in [since, until), oldest first, with their review, returns and
    justification, read ``page`` at a time (keyset pagination: constant memory, no offset)."""
    last: tuple[dt.datetime, str] | None = None
    while True:
        q = in_period(select(Evaluation), since, until)
        if last is not None:
            q = q.where(or_(Evaluation.created_at > last[0],
                            and_(Evaluation.created_at == last[0], Evaluation.id > last[1])))
        with db.read() as s:
            rows = list(s.scalars(q.order_by(Evaluation.created_at, Evaluation.id).limit(page)))
        yield from rows
        if len(rows) < page:
            return
        last = rows[-1].created_at, rows[-1].id


def unresolved_reason(ev: Evaluation) -> str | None:
    """Why an evaluation establishes no final grade yet (None: it is listed)."""
    if ev.status == "listed" and ev.final_grade is not None:
        return None
    if ev.status == "awaiting_refurbisher":
        return "suggestion_unanswered"
    if ev.status == "awaiting_justification":
        return "justification_missing"
    if ev.status == "in_review":
        return ("inconclusive_without_review" if ev.decision == "inconclusive"
                else "justification_in_review")
    return f"status_{ev.status}"


def returned_within(ev: Evaluation, as_of: dt.datetime, window_days: int
                    ) -> tuple[bool | None, str | None]:
    """(returned within the window, the return's reason); returned None while the window is
    open and nothing came back."""
    assert ev.listed_at is not None
    end = ev.listed_at + dt.timedelta(days=window_days)
    for r in ev.returns:
        if r.kind == "return" and r.occurred_at <= end:
            return True, r.reason
    return (False, None) if as_of >= end else (None, None)


def truth(ev: Evaluation, as_of: dt.datetime, window_days: int = RETURN_WINDOW_DAYS
          ) -> Truth | None:
    """The final grade a listed evaluation establishes (None: not listed, no outcome)."""
    if unresolved_reason(ev) is not None or ev.resolution not in RESOLUTION_SOURCE:
        return None
    returned, reason = returned_within(ev, as_of, window_days)
    source = RESOLUTION_SOURCE[ev.resolution]
    grade: str | None = ev.final_grade
    if source == "kept" and returned is not False:
        source, grade = ("kept_returned" if returned else "kept_window_open"), None
    return Truth(grade, source, returned, reason)


def device_info(ev: Evaluation) -> DeviceInfo | None:
    """The checklist as the refurbisher filled it in (None: a check of today's checklist was
    not asked when the evaluation was stored)."""
    if any(c not in ev.checks for c in CHECKS):
        return None
    return DeviceInfo.model_validate({
        "brand": ev.brand, "model": ev.model, "storage_gb": ev.storage_gb,
        "unlocked": ev.unlocked, "battery_health_pct": ev.battery_health_pct,
        "checks": {c: bool(ev.checks[c]) for c in CHECKS}})
