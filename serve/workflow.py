"""The refurbisher workflow as plain service functions, shared by the JSON API and the UI.

:class:`Workflow` holds one app's storage (database, photo store) and rate limiter; the
functions below submit an evaluation, act on one (accept a suggestion, keep the grade, approve,
override), justify a grade, report a return and find what a key may see. They know nothing of
HTTP: they take bytes and values and raise the typed problems of :mod:`serve.problems`, which
each caller answers in its own form (problem+json, or a page).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from fastapi.concurrency import run_in_threadpool

from fusion.policy import GradingPolicy
from serve import dashboard
from serve import evaluations as evals
from serve.auth import Principal, authenticate, check_refurbisher_id
from serve.db import Database
from serve.fields import DEVICE_REF_MAX, TEXT_MAX, check_length
from serve.grading import Service, check_grade, parse_device
from serve.model_health import OutcomeMonitor
from serve.models import ROLES, Photo, Refurbisher, ReturnReport, new_id
from serve.photorecords import Screen, hash_rows
from serve.photostore import open_photo_store, sha256
from serve.problems import (
    Forbidden,
    InvalidRequest,
    NotFound,
    TooManyAuthFailures,
    Unauthorized,
    UnknownCondition,
    UnknownReason,
)
from serve.ratelimit import open_limiter
from serve.sessions import Lifetime, session_principal
from serve.settings import Settings
from serve.shadow import ShadowRef
from vision.conditions import CONDITIONS

Upload = TypeVar("Upload")


class Workflow:
    """Storage and auth of the refurbisher workflow, for one app."""

    def __init__(self, settings: Settings, svc: Service):
        self.settings, self.svc = settings, svc
        self.db = Database(settings.database_url)
        self.photos = open_photo_store(settings)
        self.limiters = {role: open_limiter(settings, settings.rate_limits.get(
            role or "", settings.rate_limit_per_minute), settings.rate_limit_burst, "rate")
            for role in (*ROLES, None)}  # per key; None: authentication off
        self.failures = open_limiter(settings, settings.auth_failures_per_minute, 0,
                                     "auth-failures")  # per client address
        self.monitor = OutcomeMonitor(self.db, svc.metrics, settings.monitor_outcome_days,
                                      settings.monitor_refresh_s)

    async def start(self) -> None:
        """Migrate the database (``upgrade head``)."""
        await run_in_threadpool(self.db.migrate)

    async def watch_outcomes(self) -> None:
        """Once a bundle serves: start the outcome gauges' refresh (on its scale)."""
        await self.monitor.start(lambda: self.policy.grades)

    async def stop(self) -> None:
        await self.monitor.stop()
        await run_in_threadpool(self.db.dispose)

    @property
    def policy(self) -> GradingPolicy:
        """The bundle's grading policy, with the settings' decision thresholds."""
        return self.svc.loaded.policy

    async def identify(self, key: str | None, client: str | None) -> Principal:
        """The key's principal (:meth:`authenticate`), within its rate limit (RateLimited)."""
        who = await self.authenticate(key, client)
        await self.check_rate(who)
        return who

    async def check_rate(self, who: Principal, n: int = 1, cost: str = "") -> None:
        """Take ``n`` tokens from the key's bucket (its role's limit) or raise RateLimited."""
        await run_in_threadpool(self.limiters[who.role].check, who.key_id or "", n, cost)

    async def authenticate(self, key: str | None, client: str | None) -> Principal:
        """The key's principal (Unauthorized). A client address (``client``) whose keys failed
        too often lately (``auth_failures_per_minute``) is answered TooManyAuthFailures
        before its key is even looked at; a wrong key counts, a missing one does not."""
        address = client or "unknown"
        wait = await run_in_threadpool(self.failures.wait, address)
        if wait > 0:
            retry = max(1, math.ceil(wait))
            raise TooManyAuthFailures(
                f"too many failed authentications from {address}: limit "
                f"{self.settings.auth_failures_per_minute:g} per minute; retry in {retry} s",
                headers={"Retry-After": str(retry)})
        try:
            return await run_in_threadpool(authenticate, self.db, key)
        except Unauthorized:
            if key:
                await run_in_threadpool(self.failures.take, address)
            raise

    async def identify_session(self, session_id: str) -> Principal:
        """A UI session's principal (Unauthorized when it has ended), within its key's rate
        limit (RateLimited)."""
        who = await run_in_threadpool(session_principal, self.db, session_id,
                                      Lifetime.of(self.settings))
        await self.check_rate(who)
        return who


def _condition(value: str | None, part: str, field: str) -> str | None:
    if value in (None, ""):
        return None
    if value not in CONDITIONS[part]:
        raise UnknownCondition(f"{field}: unknown {part} condition {value!r}; expected one of "
                               f"{', '.join(CONDITIONS[part])}", field)
    return value


def _submitter(who: Principal, refurbisher_id: str | None) -> str:
    """The refurbisher an evaluation is submitted for: a refurbisher key's own; any (named)
    for a platform key."""
    if who.role == "refurbisher":
        if refurbisher_id not in (None, "", who.refurbisher_id):
            raise Forbidden("refurbisher_id: a refurbisher key submits for its own refurbisher "
                            "only", "refurbisher_id")
        refurbisher_id = who.refurbisher_id
    elif not refurbisher_id:
        raise InvalidRequest(f"refurbisher_id: required with a {who.role or 'platform'} key",
                             "refurbisher_id")
    assert refurbisher_id is not None
    return check_refurbisher_id(refurbisher_id)


def check_quality_skip(who: Principal, quality_check: bool, field: str = "quality_check") -> None:
    """Only a platform key (or anyone, auth off) may skip the photo check (Forbidden)."""
    if not quality_check and who.role not in (None, "platform"):
        raise Forbidden(f"{field}: only a platform key may skip the photo check; this key is "
                        f"a {who.role} key", field)


async def submit_evaluation(
        wf: Workflow, who: Principal, *, front: bytes, back: bytes, device: str | dict,
        refurbisher_grade: str, idempotency_key: str | None = None,
        refurbisher_id: str | None = None, device_ref: str | None = None,
        screen_condition: str | None = None, shell_condition: str | None = None,
        heatmaps: bool = False, quality_check: bool = True, route: str = "/v1/evaluations",
        request_id: str | None = None,
) -> tuple[dict[str, Any], bool, dict[str, str] | None]:
    """Grade, decide and store one evaluation (idempotent with ``idempotency_key``); returns
    (its JSON, created, the damage heatmaps: base64 PNG per part when asked and created).
    ``quality_check`` false (a platform key only) skips the photo check; a rejection is
    recorded under ``route``; the accepted photos' hashes are stored with the evaluation. The
    bundle that graded it decides it and is stored with it (``bundle_version``); a shadow
    bundle's prediction names the evaluation and ``request_id``."""
    check_quality_skip(who, quality_check)
    refurbisher_id = _submitter(who, refurbisher_id)
    check_length(device_ref, "device_ref", DEVICE_REF_MAX)
    info = parse_device(device)
    policy = wf.policy
    check_grade(policy, refurbisher_grade, "refurbisher_grade")
    declared = (_condition(screen_condition, "screen", "screen_condition"),
                _condition(shell_condition, "shell", "shell_condition"))
    fingerprint = evals.request_fingerprint(
        front=sha256(front), back=sha256(back), device=info.model_dump(mode="json"),
        grade=refurbisher_grade, refurbisher=refurbisher_id, device_ref=device_ref,
        declared=declared)
    if idempotency_key:
        def lookup() -> dict[str, Any] | None:
            with wf.db.read() as s:
                found = evals.find_idempotent(s, refurbisher_id, idempotency_key)
                return evals.to_dict(evals.replay_check(found, fingerprint)) if found else None
        stored = await run_in_threadpool(lookup)
        if stored is not None:
            return stored, False, None
    screen = Screen(wf.db, route, refurbisher_id, device_ref=device_ref or None)
    evaluation_id = new_id()
    result, grader = await wf.svc.grade_with(front, back, info, refurbisher_grade, heatmaps,
                                             quality_check=quality_check, screen=screen,
                                             ref=ShadowRef(request_id, evaluation_id))
    ev = evals.build_evaluation(
        grader.policy, result, refurbisher_id=refurbisher_id, refurbisher_grade=refurbisher_grade,
        info=info.model_dump(mode="json"), front_sha256=sha256(front),
        back_sha256=sha256(back), request_sha256=fingerprint,
        idempotency_key=idempotency_key, device_ref=device_ref or None,
        declared_screen=declared[0], declared_shell=declared[1],
        created_by_key_id=who.key_id)
    ev.id = evaluation_id
    ev.photo_hashes = hash_rows(screen.verdicts, refurbisher_id, device_ref or None)
    ev, created = await run_in_threadpool(evals.save_evaluation, wf.db, wf.photos, ev,
                                          front, back)
    body = evals.to_dict(ev)
    maps = None
    if created and heatmaps:
        maps = {p: v.heatmap_png for p, v in result.parts.items() if v.heatmap_png}
        body["heatmaps"] = maps
    return body, created, maps


def act(wf: Workflow, who: Principal, evaluation_id: str, action: str) -> dict[str, Any]:
    """accept-suggestion or keep-grade (the refurbisher's answer to a suggestion)."""
    return evals.act(wf.db, who, evaluation_id, action)


def approve(wf: Workflow, who: Principal, evaluation_id: str,
            comment: str | None = None) -> dict[str, Any]:
    """A reviewer approves a justified grade: the refurbisher's grade is final."""
    check_length(comment, "comment", TEXT_MAX)
    return evals.act(wf.db, who, evaluation_id, "approve", comment=comment)


def override(wf: Workflow, who: Principal, evaluation_id: str, grade: str,
             comment: str | None = None) -> dict[str, Any]:
    """A reviewer overrides a justified grade: ``grade`` (on the scale) is final."""
    check_grade(wf.policy, grade, "grade")
    check_length(comment, "comment", TEXT_MAX)
    return evals.act(wf.db, who, evaluation_id, "override", grade=grade, comment=comment)


async def justify(wf: Workflow, who: Principal, evaluation_id: str, text: str,
                  uploads: Sequence[Upload],
                  read: Callable[[Upload, int], Awaitable[bytes]]) -> dict[str, Any]:
    """Justify a grade far from the model's: ``text`` and readable photos (``read(upload, i)``
    gives the bytes of photo ``i``, refusing it when too large); the evaluation goes to review.
    The evaluation's status is checked before any photo is read."""
    await run_in_threadpool(evals.check_transition, wf.db, who, evaluation_id, "justification")
    s, text = wf.settings, text.strip()
    if len(text) < s.justification_min_chars:
        raise InvalidRequest(f"text: at least {s.justification_min_chars} characters", "text")
    check_length(text, "text", TEXT_MAX)
    if not uploads:
        raise InvalidRequest("photos: add at least one photo", "photos")
    if len(uploads) > s.justification_max_photos:
        raise InvalidRequest(f"photos: at most {s.justification_max_photos} photos", "photos")
    data = []
    for i, upload in enumerate(uploads):
        b = await read(upload, i)
        await wf.svc.decode(f"photos[{i}]", b)  # refuses what is not a readable photo
        data.append(b)
    return await run_in_threadpool(evals.justify, wf.db, wf.photos, who, evaluation_id, text,
                                   data)


def report_return(wf: Workflow, who: Principal, *, evaluation_id: str, kind: str, reason: str,
                  comment: str | None, occurred_at: dt.datetime | None,
                  idempotency_key: str | None) -> tuple[ReturnReport, bool]:
    """Record a return or claim on a listed evaluation (a reason from the settings, not in
    the future); (row, created)."""
    check_length(comment, "comment", TEXT_MAX)
    reasons = wf.settings.return_reasons
    if reason not in reasons:
        raise UnknownReason(f"reason: unknown reason {reason!r}; expected one of "
                            f"{', '.join(reasons)}", "reason")
    occurred = utc(occurred_at)
    if occurred and occurred > dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5):
        raise InvalidRequest("occurred_at: in the future", "occurred_at")
    return evals.report_return(wf.db, who, evaluation_id=evaluation_id, kind=kind,
                               reason=reason, comment=comment, occurred_at=occurred,
                               idempotency_key=idempotency_key)


def photo(wf: Workflow, who: Principal, evaluation_id: str, name: str) -> Photo | None:
    """Photo ``name`` (front, back, justification-N) of a visible evaluation (NotFound when
    not visible), if stored; None when there is no such photo."""
    with wf.db.read() as s:
        ev = evals.get_visible(s, who, evaluation_id)
        digest = evals.photo_digest(ev, name)
        row = s.get(Photo, digest) if digest else None
    return row if row is not None and wf.photos.exists(row.sha256) else None


def refurbisher_dashboard(wf: Workflow, who: Principal, refurbisher_id: str,
                          days: int) -> dict[str, Any]:
    """A known refurbisher's dashboard, for a key that sees it (NotFound otherwise)."""
    with wf.db.read() as s:
        known = s.get(Refurbisher, refurbisher_id) is not None
    if not known or not who.sees_refurbisher(refurbisher_id):
        raise NotFound(f"refurbisher {refurbisher_id!r} not found", "refurbisher_id")
    return dashboard.refurbisher_dashboard(wf.db, refurbisher_id, days)


def utc(t: dt.datetime | None) -> dt.datetime | None:
    """A datetime without an offset is UTC."""
    if t is None:
        return None
    return t if t.tzinfo else t.replace(tzinfo=dt.UTC)
