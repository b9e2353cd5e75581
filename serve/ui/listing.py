"""The evaluation list's filters and paging, read from the page's query string: status,
decision, dates from/to (inclusive days, UTC), limit and offset. Every value is bounded; a bad
one is a :class:`BadFilter` naming its field (the page says what is wrong, never a 500)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from starlette.datastructures import QueryParams

from serve.models import DECISIONS, STATUSES
from serve.ui.i18n import _

LIMITS = (10, 25, 50, 100)
DEFAULT_LIMIT = 25
MAX_OFFSET = 1_000_000
#: Dates from this year to the next: a typo such as 0413 is refused, not searched.
FIRST_YEAR = 2000


class BadFilter(ValueError):
    """A filter value the list cannot use; ``field`` names its input."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Filters:
    """What the list shows: the filters, then the page (``limit`` rows from ``offset``)."""

    status: str | None = None
    decision: str | None = None
    date_from: dt.date | None = None
    date_to: dt.date | None = None
    limit: int = DEFAULT_LIMIT
    offset: int = 0

    def query(self, **change: Any) -> dict[str, Any]:
        """The keyword arguments of ``serve.evaluations.list_evaluations``."""
        f = {**self.__dict__, **change}
        since = (dt.datetime.combine(f["date_from"], dt.time(), dt.UTC)
                 if f["date_from"] else None)
        until = (dt.datetime.combine(f["date_to"] + dt.timedelta(days=1), dt.time(), dt.UTC)
                 if f["date_to"] else None)
        return {"status": f["status"], "decision": f["decision"], "since": since,
                "until": until, "limit": f["limit"], "offset": f["offset"]}

    def href(self, path: str, offset: int) -> str:
        """This list's page at ``offset`` (the filters kept)."""
        params = {"status": self.status, "decision": self.decision,
                  "from": self.date_from.isoformat() if self.date_from else None,
                  "to": self.date_to.isoformat() if self.date_to else None,
                  "limit": self.limit if self.limit != DEFAULT_LIMIT else None,
                  "offset": offset or None}
        query = urlencode({k: v for k, v in params.items() if v is not None})
        return f"{path}?{query}" if query else path


def _choice(params: QueryParams, name: str, allowed: tuple[str, ...], label: str) -> str | None:
    value = params.get(name) or None
    if value is not None and value not in allowed:
        raise BadFilter(name, _("%(label)s: unknown value %(value)s; choose one in the list")
                        % {"label": label, "value": repr(value[:40])})
    return value


def _date(params: QueryParams, name: str, label: str) -> dt.date | None:
    text = (params.get(name) or "").strip()
    if not text:
        return None
    try:
        day = dt.date.fromisoformat(text[:10]) if len(text) <= 10 else None
    except ValueError:
        day = None
    if day is None or not FIRST_YEAR <= day.year <= dt.date.today().year + 1:
        raise BadFilter(name, _("%(label)s: enter a date as YYYY-MM-DD between %(first)d and "
                                "next year") % {"label": label, "first": FIRST_YEAR})
    return day


def _int(params: QueryParams, name: str, default: int, low: int, high: int, label: str) -> int:
    text = (params.get(name) or "").strip()
    if not text:
        return default
    if not text.isdigit() or len(text) > 9 or not low <= int(text) <= high:
        raise BadFilter(name, _("%(label)s: enter a whole number from %(low)d to %(high)d")
                        % {"label": label, "low": low, "high": high})
    return int(text)


def parse(params: QueryParams, status: str | None = None) -> Filters:
    """The filters of a query string (``status``: fixed by the page, as the review queue's)."""
    date_from = _date(params, "from", _("From"))
    date_to = _date(params, "to", _("To"))
    if date_from and date_to and date_to < date_from:
        raise BadFilter("to", _("To: the end date is before the start date"))
    return Filters(
        status=status or _choice(params, "status", STATUSES, _("Status")),
        decision=_choice(params, "decision", DECISIONS, _("Decision")),
        date_from=date_from, date_to=date_to,
        limit=_int(params, "limit", DEFAULT_LIMIT, 1, max(LIMITS), _("Per page")),
        offset=_int(params, "offset", 0, 0, MAX_OFFSET, _("Offset")))
