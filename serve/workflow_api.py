"""The refurbisher workflow's HTTP routes: evaluations, reviews, returns, dashboards, API keys.

    POST /v1/evaluations                              refurbisher, platform
    GET  /v1/evaluations[?status&decision&refurbisher_id&since&until&limit&offset]
                                                      refurbisher (own), platform, reviewer
    GET  /v1/evaluations/{id}                         refurbisher (own), platform, reviewer
    GET  /v1/evaluations/{id}/photos/{name}           refurbisher (own), platform, reviewer
    POST /v1/evaluations/{id}/accept-suggestion       refurbisher (own)
    POST /v1/evaluations/{id}/keep-grade              refurbisher (own)
    POST /v1/evaluations/{id}/justification           refurbisher (own)
    POST /v1/evaluations/{id}/approve                 reviewer
    POST /v1/evaluations/{id}/override                reviewer
    POST /v1/returns                                  platform
    GET  /v1/dashboard/refurbisher/{id}?days=30       refurbisher (own), platform, reviewer
    GET  /v1/dashboard/platform?days=30               platform, reviewer
    GET  /v1/me                                       any key
    POST /v1/keys, GET /v1/keys, DELETE /v1/keys/{id} admin

Another refurbisher's evaluation or dashboard answers 404, exactly like one that does not
exist; a route outside the key's role answers 403. ``POST /v1/evaluations`` and
``POST /v1/returns`` are idempotent with an ``Idempotency-Key`` header: a retry with the same key
and the same content returns the stored result (200, ``Idempotent-Replayed: true``) instead of
creating another; the same key with different content is a 422.

Route signatures are evaluated eagerly (no ``from __future__ import annotations``): FastAPI
reads their ``Annotated`` dependencies, which are local to :func:`_router`.
"""

import datetime as dt
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import APIRouter, Depends, File, Form, Header, Path, Query, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, JSONResponse
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field

from fusion.policy import GradingPolicy
from serve import dashboard
from serve import evaluations as evals
from serve.auth import (
    OPEN,
    Principal,
    RateLimiter,
    authenticate,
    check_refurbisher_id,
    create_key,
    list_keys,
    revoke_key,
)
from serve.db import Database
from serve.models import DECISIONS, ROLES, STATUSES, Photo, Refurbisher
from serve.photostore import PhotoStore, sha256
from serve.problems import Problem
from serve.responses import EvaluationOut, EvaluationPage
from serve.settings import Settings
from tabular.schema import parse_device_info
from vision.conditions import CONDITIONS

if TYPE_CHECKING:
    from serve.app import Service

_bearer = HTTPBearer(auto_error=False, description="Authorization: Bearer <key>")
_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="X-API-Key: <key>")
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", min_length=1,
                                              max_length=255)]
EvaluationId = Annotated[str, Path(min_length=1, max_length=64)]
Days = Annotated[int, Query(ge=1, le=366, description="window: the last N days")]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ApproveBody(_Body):
    comment: str | None = Field(None, max_length=4000)


class OverrideBody(_Body):
    grade: str = Field(description="the reviewer's grade (final)")
    comment: str | None = Field(None, max_length=4000)


class ReturnBody(_Body):
    evaluation_id: str = Field(min_length=1, max_length=64)
    kind: Literal["return", "claim"] = "return"
    reason: str = Field(min_length=1, max_length=64)
    comment: str | None = Field(None, max_length=4000)
    occurred_at: dt.datetime | None = Field(None, description="default: now; ISO 8601, UTC "
                                            "when no offset is given")


class KeyBody(_Body):
    role: Literal["refurbisher", "platform", "reviewer", "admin"]
    refurbisher_id: str | None = Field(None, description="required for a refurbisher key")
    name: str | None = Field(None, max_length=200)


class Workflow:
    """Storage, auth and routes of the refurbisher workflow, for one app."""

    def __init__(self, settings: Settings, svc: "Service"):
        self.settings, self.svc = settings, svc
        self.db = Database(settings.database_url)
        self.photos = PhotoStore(settings.photo_dir)
        self.limiter = RateLimiter(settings.rate_limit_per_minute, settings.rate_limit_burst)
        self.scoring = Depends(self.require("refurbisher", "platform"))
        self.router = _router(self)

    async def start(self) -> None:
        """Migrate the database (``upgrade head``); apply the settings' decision thresholds to
        the grader, so ``/v1/grade`` and evaluations decide alike."""
        await run_in_threadpool(self.db.migrate)
        if self.svc.grader is not None:
            s = self.settings
            self.svc.grader.policy = evals.decision_policy(
                self.svc.grader.policy, s.validated_max_gap, s.suggestion_max_gap)

    async def stop(self) -> None:
        await run_in_threadpool(self.db.dispose)

    @property
    def policy(self) -> GradingPolicy:
        """The bundle's grading policy, with the settings' decision thresholds."""
        if self.svc.grader is None:
            raise Problem(503, "not-ready", "the model bundle is still loading")
        return self.svc.grader.policy

    def require(self, *roles: str):
        """A dependency: the caller's principal, with one of ``roles`` (401, 403, 429)."""
        async def principal(
            bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
            header: Annotated[str | None, Depends(_header)],
        ) -> Principal:
            if not self.settings.auth_required:
                return OPEN
            key = header or (bearer.credentials if bearer else None)
            who = await run_in_threadpool(authenticate, self.db, key)
            self.limiter.check(who.key_id or "")
            if not who.has(*roles):
                raise Problem(403, "forbidden", f"this route needs a {' or '.join(roles)} key; "
                              f"this key is a {who.role} key")
            return who
        return principal


async def _read(upload: UploadFile, field: str, limit: int) -> bytes:
    data = await upload.read(limit + 1)
    if len(data) > limit:
        raise Problem(413, "photo-too-large", f"{field}: larger than the limit of {limit} bytes",
                      field)
    return data


def _condition(value: str | None, part: str, field: str) -> str | None:
    if value in (None, ""):
        return None
    if value not in CONDITIONS[part]:
        raise Problem(422, "unknown-condition", f"{field}: unknown {part} condition {value!r}; "
                      f"expected one of {', '.join(CONDITIONS[part])}", field)
    return value


async def submit_evaluation(
        wf: Workflow, who: Principal, *, front: bytes, back: bytes, device: str | dict,
        refurbisher_grade: str, idempotency_key: str | None = None,
        refurbisher_id: str | None = None, device_ref: str | None = None,
        screen_condition: str | None = None, shell_condition: str | None = None,
        heatmaps: bool = False) -> tuple[dict[str, Any], bool, dict[str, str] | None]:
    """Grade, decide and store one evaluation (``POST /v1/evaluations`` and the UI's form);
    returns (its JSON, created, the damage heatmaps: base64 PNG per part when asked)."""
    if who.role == "refurbisher":
        if refurbisher_id not in (None, "", who.refurbisher_id):
            raise Problem(403, "forbidden", "refurbisher_id: a refurbisher key submits "
                          "for its own refurbisher only", "refurbisher_id")
        refurbisher_id = who.refurbisher_id
    elif not refurbisher_id:
        raise Problem(422, "invalid-request", "refurbisher_id: required with a "
                      f"{who.role or 'platform'} key", "refurbisher_id")
    assert refurbisher_id is not None
    check_refurbisher_id(refurbisher_id)
    try:
        info = parse_device_info(device)
    except ValueError as e:
        raise Problem(422, "invalid-device", f"device: {e}", "device") from None
    policy = wf.policy
    if refurbisher_grade not in policy.grades:
        raise Problem(422, "unknown-grade", f"refurbisher_grade: unknown grade "
                      f"{refurbisher_grade!r}; this scale has {', '.join(policy.grades)}",
                      "refurbisher_grade")
    declared = (_condition(screen_condition, "screen", "screen_condition"),
                _condition(shell_condition, "shell", "shell_condition"))
    fingerprint = evals.request_fingerprint(
        front=sha256(front), back=sha256(back), device=info.model_dump(mode="json"),
        grade=refurbisher_grade, refurbisher=refurbisher_id, device_ref=device_ref,
        declared=declared)
    if idempotency_key:
        def lookup():
            with wf.db.read() as s:
                found = evals.find_idempotent(s, refurbisher_id, idempotency_key)
                return evals.to_dict(evals.replay_check(found, fingerprint)) if found else None
        stored = await run_in_threadpool(lookup)
        if stored is not None:
            return stored, False, None
    result = await wf.svc.grade(front, back, info, refurbisher_grade, heatmaps)
    ev = evals.build_evaluation(
        policy, result, refurbisher_id=refurbisher_id, refurbisher_grade=refurbisher_grade,
        info=info.model_dump(mode="json"), front_sha256=sha256(front),
        back_sha256=sha256(back), request_sha256=fingerprint,
        idempotency_key=idempotency_key, device_ref=device_ref or None,
        declared_screen=declared[0], declared_shell=declared[1],
        created_by_key_id=who.key_id)
    ev, created = await run_in_threadpool(evals.save_evaluation, wf.db, wf.photos, ev,
                                          front, back)
    body = evals.to_dict(ev)
    maps = None
    if created and heatmaps:
        maps = {p: v.heatmap_png for p, v in result.parts.items() if v.heatmap_png}
        body["heatmaps"] = maps
    return body, created, maps


def _router(wf: Workflow) -> APIRouter:
    r = APIRouter(prefix="/v1")
    submitter = Depends(wf.require("refurbisher", "platform"))
    reader = Depends(wf.require("refurbisher", "platform", "reviewer"))
    refurbisher = Depends(wf.require("refurbisher"))
    reviewer = Depends(wf.require("reviewer"))
    platform = Depends(wf.require("platform"))
    staff = Depends(wf.require("platform", "reviewer"))
    admin = Depends(wf.require("admin"))
    anyone = Depends(wf.require(*ROLES))
    limit_bytes = int(wf.settings.max_upload_mb * 1024 * 1024)

    @r.post("/evaluations", status_code=201, tags=["evaluations"], response_model=EvaluationOut,
            summary="Grade, decide and store one evaluation (idempotent)")
    async def create_evaluation(
        who: Annotated[Principal, submitter],
        front: Annotated[UploadFile, File(description="front photo")],
        back: Annotated[UploadFile, File(description="back photo")],
        device: Annotated[str, Form(description="device facts and checks, JSON")],
        refurbisher_grade: Annotated[str, Form(description="the refurbisher's grade")],
        idempotency_key: IdempotencyKey = None,
        refurbisher_id: Annotated[str | None, Form(description="required for a platform key; "
                                                   "a refurbisher key submits for itself")]
        = None,
        device_ref: Annotated[str | None, Form(max_length=128, description="the platform's "
                                               "id of the device or listing")] = None,
        screen_condition: Annotated[str | None, Form(description="declared")] = None,
        shell_condition: Annotated[str | None, Form(description="declared")] = None,
        heatmaps: Annotated[bool, Form(description="damage heatmaps in this answer")] = False,
    ) -> JSONResponse:
        front_b = await _read(front, "front", limit_bytes)
        back_b = await _read(back, "back", limit_bytes)
        body, created, _ = await submit_evaluation(
            wf, who, front=front_b, back=back_b, device=device,
            refurbisher_grade=refurbisher_grade, idempotency_key=idempotency_key,
            refurbisher_id=refurbisher_id, device_ref=device_ref,
            screen_condition=screen_condition, shell_condition=shell_condition,
            heatmaps=heatmaps)
        if not created:
            return JSONResponse(body, headers={"Idempotent-Replayed": "true"})
        return JSONResponse(body, status_code=201,
                            headers={"Location": f"/v1/evaluations/{body['id']}"})

    @r.get("/evaluations", tags=["evaluations"], summary="Evaluations, newest first",
           response_model=EvaluationPage)
    def list_evaluations(
        who: Annotated[Principal, reader],
        status: Annotated[Literal[STATUSES] | None, Query()] = None,  # type: ignore[valid-type]
        decision: Annotated[Literal[DECISIONS] | None, Query()] = None,  # type: ignore[valid-type]
        refurbisher_id: Annotated[str | None, Query(max_length=64)] = None,
        since: Annotated[dt.datetime | None, Query(description="created at or after")] = None,
        until: Annotated[dt.datetime | None, Query(description="created before")] = None,
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
        offset: Annotated[int, Query(ge=0)] = 0,
    ) -> dict[str, Any]:
        return evals.list_evaluations(wf.db, who, status=status, decision=decision,
                                      refurbisher_id=refurbisher_id, since=_utc(since),
                                      until=_utc(until), limit=limit, offset=offset)

    @r.get("/evaluations/{evaluation_id}", tags=["evaluations"], summary="One evaluation",
           response_model=EvaluationOut)
    def get_evaluation(who: Annotated[Principal, reader],
                       evaluation_id: EvaluationId) -> dict[str, Any]:
        return evals.load(wf.db, who, evaluation_id)

    @r.get("/evaluations/{evaluation_id}/photos/{name}", tags=["evaluations"],
           summary="A photo of the evaluation: front, back or justification-N",
           response_class=FileResponse)
    def get_photo(who: Annotated[Principal, reader], evaluation_id: EvaluationId,
                  name: Annotated[str, Path(max_length=32)]) -> FileResponse:
        with wf.db.read() as s:
            ev = evals.get_visible(s, who, evaluation_id)
            digest = evals.photo_digest(ev, name)
            photo = s.get(Photo, digest) if digest else None
        if photo is None or not wf.photos.exists(photo.sha256):
            raise Problem(404, "not-found", f"name: evaluation {evaluation_id} has no photo "
                          f"{name!r} (front, back, justification-N)", "name")
        return FileResponse(wf.photos.path(photo.sha256), media_type=photo.media_type,
                            headers={"Cache-Control": "private, max-age=31536000, immutable",
                                     "ETag": f'"{photo.sha256}"'})

    @r.post("/evaluations/{evaluation_id}/accept-suggestion", tags=["evaluations"],
            summary="Accept the model's grade (suggestion)", response_model=EvaluationOut)
    def accept_suggestion(who: Annotated[Principal, refurbisher],
                          evaluation_id: EvaluationId) -> dict[str, Any]:
        return evals.act(wf.db, who, evaluation_id, "accept-suggestion")

    @r.post("/evaluations/{evaluation_id}/keep-grade", tags=["evaluations"],
            summary="Keep the refurbisher's grade (suggestion; flagged as kept)",
            response_model=EvaluationOut)
    def keep_grade(who: Annotated[Principal, refurbisher],
                   evaluation_id: EvaluationId) -> dict[str, Any]:
        return evals.act(wf.db, who, evaluation_id, "keep-grade")

    @r.post("/evaluations/{evaluation_id}/justification", status_code=201, tags=["evaluations"],
            summary="Justify a grade far from the model's: text and extra photos",
            response_model=EvaluationOut)
    async def justification(
        who: Annotated[Principal, refurbisher], evaluation_id: EvaluationId,
        text: Annotated[str, Form(max_length=4000, description="why the grade is right")],
        photos: Annotated[list[UploadFile], File(description="at least one extra photo")],
    ) -> dict[str, Any]:
        await run_in_threadpool(evals.check_transition, wf.db, who, evaluation_id,
                                "justification")
        s = wf.settings
        if len(text.strip()) < s.justification_min_chars:
            raise Problem(422, "invalid-request", f"text: at least {s.justification_min_chars} "
                          "characters", "text")
        if not photos:
            raise Problem(422, "invalid-request", "photos: at least one photo is required",
                          "photos")
        if len(photos) > s.justification_max_photos:
            raise Problem(422, "invalid-request", f"photos: at most "
                          f"{s.justification_max_photos} photos", "photos")
        data = []
        for i, upload in enumerate(photos):
            field = f"photos[{i}]"
            b = await _read(upload, field, limit_bytes)
            await wf.svc.decode(field, b)  # refuses what is not a readable photo
            data.append(b)
        return await run_in_threadpool(evals.justify, wf.db, wf.photos, who, evaluation_id,
                                       text.strip(), data)

    @r.post("/evaluations/{evaluation_id}/approve", tags=["reviews"],
            summary="Approve a justified grade (final grade: the refurbisher's)",
            response_model=EvaluationOut)
    def approve(who: Annotated[Principal, reviewer], evaluation_id: EvaluationId,
                body: ApproveBody | None = None) -> dict[str, Any]:
        return evals.act(wf.db, who, evaluation_id, "approve",
                         comment=body.comment if body else None)

    @r.post("/evaluations/{evaluation_id}/override", tags=["reviews"],
            summary="Override a justified grade with the reviewer's",
            response_model=EvaluationOut)
    def override(who: Annotated[Principal, reviewer], evaluation_id: EvaluationId,
                 body: OverrideBody) -> dict[str, Any]:
        grades = wf.policy.grades
        if body.grade not in grades:
            raise Problem(422, "unknown-grade", f"grade: unknown grade {body.grade!r}; this "
                          f"scale has {', '.join(grades)}", "grade")
        return evals.act(wf.db, who, evaluation_id, "override", grade=body.grade,
                         comment=body.comment)

    @r.post("/returns", status_code=201, tags=["returns"],
            summary="Report a return or a claim on a listed device (idempotent)")
    def report_return(who: Annotated[Principal, platform], body: ReturnBody,
                      idempotency_key: IdempotencyKey = None) -> JSONResponse:
        reasons = wf.settings.return_reasons
        if body.reason not in reasons:
            raise Problem(422, "unknown-reason", f"reason: unknown reason {body.reason!r}; "
                          f"expected one of {', '.join(reasons)}", "reason")
        occurred = _utc(body.occurred_at)
        if occurred and occurred > dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5):
            raise Problem(422, "invalid-request", "occurred_at: in the future", "occurred_at")
        row, created = evals.report_return(
            wf.db, who, evaluation_id=body.evaluation_id, kind=body.kind, reason=body.reason,
            comment=body.comment, occurred_at=occurred, idempotency_key=idempotency_key)
        if not created:
            return JSONResponse(evals.return_dict(row), headers={"Idempotent-Replayed": "true"})
        return JSONResponse(evals.return_dict(row), status_code=201)

    @r.get("/dashboard/refurbisher/{refurbisher_id}", tags=["dashboards"],
           summary="One refurbisher's dashboard data")
    def refurbisher_dashboard(who: Annotated[Principal, reader],
                              refurbisher_id: Annotated[str, Path(max_length=64)],
                              days: Days = 30) -> dict[str, Any]:
        with wf.db.read() as s:
            known = s.get(Refurbisher, refurbisher_id) is not None
        if not known or not who.sees_refurbisher(refurbisher_id):
            raise Problem(404, "not-found", f"refurbisher {refurbisher_id!r} not found",
                          "refurbisher_id")
        return dashboard.refurbisher_dashboard(wf.db, refurbisher_id, days)

    @r.get("/dashboard/platform", tags=["dashboards"], summary="The platform's KPI data")
    def platform_dashboard(who: Annotated[Principal, staff], days: Days = 30) -> dict[str, Any]:
        return dashboard.platform_dashboard(wf.db, wf.policy, days)

    @r.get("/me", tags=["keys"], summary="The calling key: role and refurbisher")
    def me(who: Annotated[Principal, anyone]) -> dict[str, Any]:
        return {"key_id": who.key_id, "role": who.role, "refurbisher_id": who.refurbisher_id,
                "name": who.name, "auth_required": wf.settings.auth_required}

    @r.post("/keys", status_code=201, tags=["keys"],
            summary="Create an API key (the key is shown once)")
    def new_key(who: Annotated[Principal, admin], body: KeyBody) -> dict[str, Any]:
        if body.refurbisher_id:
            check_refurbisher_id(body.refurbisher_id)
        try:
            record, key = create_key(wf.db, body.role, body.refurbisher_id, body.name)
        except ValueError as e:
            raise Problem(422, "invalid-request", str(e).replace("refurbisher:",
                          "refurbisher_id:", 1), "refurbisher_id") from None
        return {**record, "key": key}

    @r.get("/keys", tags=["keys"], summary="API keys (never their secrets)")
    def keys(who: Annotated[Principal, admin]) -> dict[str, Any]:
        return {"items": list_keys(wf.db)}

    @r.delete("/keys/{key_id}", tags=["keys"], summary="Revoke an API key")
    def revoke(who: Annotated[Principal, admin],
               key_id: Annotated[str, Path(max_length=32)]) -> dict[str, Any]:
        record = revoke_key(wf.db, key_id)
        if record is None:
            raise Problem(404, "not-found", f"key {key_id!r} not found", "key_id")
        return record

    return r


def _utc(t: dt.datetime | None) -> dt.datetime | None:
    if t is None:
        return None
    return t if t.tzinfo else t.replace(tzinfo=dt.UTC)
