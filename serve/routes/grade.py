"""Grading without storage: ``POST /v1/grade`` (multipart photos), ``POST /v1/grade/batch``
(base64 photos, one result or problem per device) and ``GET /v1/model``."""

import asyncio
import base64
import binascii
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Request, UploadFile
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from serve.auth import Principal
from serve.deps import (
    DEVICE_FORM_HELP,
    ServiceDep,
    SettingsDep,
    Submitter,
    WorkflowDep,
    form_json_text,
    read_upload,
)
from serve.gate import KeyFirstRoute
from serve.grading import Service, parse_device
from serve.jsonscan import count_devices
from serve.openapi import problems, request_body
from serve.photorecords import Screen
from serve.problems import (
    TYPE_BASE,
    BatchTooLarge,
    InvalidBase64,
    InvalidRequest,
    Problem,
    problem_of,
)
from serve.responses import BatchItem, BatchProblem, BatchResponse, GradeResponse
from serve.shadow import ShadowRef
from serve.workflow import check_quality_skip
from tabular.schema import describe_errors

router = APIRouter(route_class=KeyFirstRoute)


DEVICE_REF_HELP = ("the platform's id of the device or listing: a photo already stored for "
                   "another device_ref is a duplicate; without it, any stored photo is")


def screen_for(wf: Any, route: str, who: Any, device_ref: str | None) -> Screen:
    """The duplicate check of a stateless grade: photos stored for another device than
    ``device_ref`` or, without one, any stored photo."""
    return Screen(wf.db, route, who.refurbisher_id, device_ref=device_ref or None,
                  any_device=not device_ref)


class BatchDevice(BaseModel):
    model_config = ConfigDict(strict=True)  # as its schema: no 0 for false, no 1 for "1"
    id: str = Field(min_length=1, max_length=128)
    front: str = Field(description="front photo, base64")
    back: str = Field(description="back photo, base64")
    device: dict[str, Any] = Field(description="the checklist, as POST /v1/grade's device "
                                   "field; an invalid one is this device's problem")
    refurbisher_grade: str | None = None
    device_ref: str | None = Field(None, max_length=128, description=DEVICE_REF_HELP)
    quality_check: bool = Field(True, description="check the photos before grading; only a "
                                "platform key may send false")


class BatchRequest(BaseModel):
    devices: list[BatchDevice] = Field(min_length=1)


@router.post("/v1/grade", summary="Grade one device from its photos and checklist",
             responses=problems(415, 503))
async def grade(
    request: Request,
    who: Submitter,
    svc: ServiceDep,
    wf: WorkflowDep,
    settings: SettingsDep,
    front: Annotated[UploadFile, File(description="front photo (JPEG, PNG, WebP, HEIC)")],
    back: Annotated[UploadFile, File(description="back photo")],
    device: Annotated[str | UploadFile, Form(description=DEVICE_FORM_HELP)],
    refurbisher_grade: Annotated[str | None, Form()] = None,
    heatmaps: Annotated[bool, Form(description="include damage heatmaps (PNG)")] = False,
    quality_check: Annotated[bool, Form(description="check the photos before grading; "
                                        "only a platform key may send false")] = True,
    device_ref: Annotated[str | None, Form(max_length=128, description=DEVICE_REF_HELP)] = None,
) -> GradeResponse:
    check_quality_skip(who, quality_check)
    info = parse_device(await form_json_text(device, "device"))
    limit = settings.max_upload_bytes
    front_b, back_b = await read_upload(front, "front", limit), await read_upload(back, "back",
                                                                                  limit)
    screen = screen_for(wf, "/v1/grade", who, device_ref)
    result = await svc.grade(front_b, back_b, info, refurbisher_grade or None, heatmaps,
                             quality_check=quality_check, screen=screen,
                             ref=ShadowRef(request.state.request_id))
    return GradeResponse(request_id=request.state.request_id, **dict(result))


def _batch_request(body: bytes) -> BatchRequest:
    try:
        return BatchRequest.model_validate_json(body)
    except ValidationError as e:
        errors = describe_errors(e)
        raise InvalidRequest("; ".join(errors[:10]), errors[0].split(":")[0]) from None


async def _grade_one(svc: Service, screen: Screen, who: Principal, i: int,
                     item: BatchDevice, request_id: str) -> BatchItem:
    """One device of a batch: its result, or the problem that stopped it (an overloaded
    queue stops the whole batch)."""
    prefix = f"devices[{i}]."
    try:
        check_quality_skip(who, item.quality_check, f"{prefix}quality_check")
        info = parse_device(item.device, f"{prefix}device")
        photos = []
        for name in ("front", "back"):
            try:
                photos.append(base64.b64decode(getattr(item, name), validate=True))
            except (binascii.Error, ValueError):
                raise InvalidBase64(f"{prefix}{name}: not valid base64",
                                    f"{prefix}{name}") from None
        result = await svc.grade(photos[0], photos[1], info, item.refurbisher_grade, False,
                                 prefix, quality_check=item.quality_check, screen=screen,
                                 ref=ShadowRef(request_id, item=item.id))
        return BatchItem(id=item.id, ok=True, result=result)
    except Problem as e:
        p = problem_of(e)
        if p.status == 503:
            raise
        svc.metrics.errors.labels(p.kind).inc()
        return BatchItem(id=item.id, ok=False, problem=BatchProblem(
            status=p.status, type=TYPE_BASE + p.kind, detail=p.detail, field=p.field,
            reason=p.extra.get("reason")))


@router.post("/v1/grade/batch", summary="Grade many devices in one call (base64 photos)",
             responses=problems(413, 422, 503), openapi_extra=request_body(BatchRequest))
async def grade_batch(request: Request, who: Submitter, svc: ServiceDep, wf: WorkflowDep,
                      settings: SettingsDep) -> BatchResponse:
    raw = await request.body()  # within the route's byte limit (serve/gate.py)
    n = count_devices(raw, settings.max_batch_devices)  # before validation builds them
    if who.key_id is not None and n > 1:  # a device costs a request: one token each
        await wf.check_rate(who, n - 1, f"a batch of {n} devices costs {n}")
    body = _batch_request(raw)
    if len(body.devices) > settings.max_batch_devices:
        raise BatchTooLarge(f"devices: {len(body.devices)} exceeds the limit of "
                            f"{settings.max_batch_devices}", "devices")
    results = await asyncio.gather(*(
        _grade_one(svc, screen_for(wf, "/v1/grade/batch", who, d.device_ref), who, i, d,
                   request.state.request_id)
        for i, d in enumerate(body.devices)))
    return BatchResponse(request_id=request.state.request_id, results=list(results))


@router.get("/v1/model", summary="Bundle metadata, execution provider, thread settings, the "
            "active and shadow bundles", responses=problems(503))
async def model(svc: ServiceDep, settings: SettingsDep) -> dict[str, Any]:
    return {**svc.loaded.info(), "versions": svc.versions(),
            "batching": {"enabled": svc.batching, "setting": settings.batching,
                         "max_batch_size": settings.max_batch_size,
                         "max_wait_ms": settings.max_wait_ms, "queue_size": settings.queue_size},
            "limits": {"max_upload_mb": settings.max_upload_mb,
                       "max_pixels": settings.max_pixels},
            "monitoring": svc.metrics.window_summary(svc.loaded.manifest.bundle_version)}
