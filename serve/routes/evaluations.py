"""Evaluations: submit (idempotent), list, read, photos, and the refurbisher's answers.

    POST /v1/evaluations                              refurbisher, platform
    GET  /v1/evaluations[?status&decision&refurbisher_id&since&until&limit&offset]
                                                      refurbisher (own), platform, reviewer
    GET  /v1/evaluations/{id}                         refurbisher (own), platform, reviewer
    GET  /v1/evaluations/{id}/photos/{name}           refurbisher (own), platform, reviewer
    POST /v1/evaluations/{id}/accept-suggestion       refurbisher (own)
    POST /v1/evaluations/{id}/keep-grade              refurbisher (own)
    POST /v1/evaluations/{id}/justification           refurbisher (own)

Another refurbisher's evaluation answers 404, exactly like one that does not exist.
``POST /v1/evaluations`` is idempotent with an ``Idempotency-Key`` header: a retry with the same
key and content returns the stored evaluation (200, ``Idempotent-Replayed: true``); the same key
with different content is a 422.
"""

from typing import Annotated, Any, Literal

from fastapi import APIRouter, File, Form, Path, Query, Request, Response, UploadFile
from fastapi.responses import FileResponse, JSONResponse

from serve import evaluations as evals
from serve import workflow
from serve.deps import (
    DEVICE_FORM_HELP,
    EvaluationId,
    IdempotencyKey,
    Reader,
    RefurbisherKey,
    Submitter,
    WorkflowDep,
    form_json_text,
    read_upload,
)
from serve.fields import DEVICE_REF_MAX, TEXT_MAX, IsoDatetime
from serve.gate import KeyFirstRoute
from serve.headers import PHOTO_CACHE
from serve.models import DECISIONS, STATUSES
from serve.openapi import problems
from serve.photostore import photo_response
from serve.problems import NotFound
from serve.responses import EvaluationOut, EvaluationPage

# Paging past a billion rows is a client bug; an unbounded offset overflowed SQLite (a 500).
MAX_OFFSET = 1_000_000_000

router = APIRouter(prefix="/v1", tags=["evaluations"], route_class=KeyFirstRoute)
#: A stored photo, as it was uploaded.
PHOTO_RESPONSE = {"description": "The photo", "content": {
    t: {"schema": {"type": "string", "format": "binary"}}
    for t in ("image/jpeg", "image/png", "image/webp", "image/heic")}}
#: An idempotent retry: the stored answer.
REPLAYED: dict[int | str, dict[str, Any]] = {200: {
    "description": "A retry with the same Idempotency-Key: the stored answer",
    "model": EvaluationOut, "headers": {"Idempotent-Replayed": {
        "schema": {"type": "string", "enum": ["true"]}, "required": True}}}}
Status = Literal[STATUSES]  # type: ignore[valid-type]
DecisionName = Literal[DECISIONS]  # type: ignore[valid-type]


@router.post("/evaluations", status_code=201, response_model=EvaluationOut,
             summary="Grade, decide and store one evaluation (idempotent)",
             responses={**REPLAYED, **problems(415, 503)})
async def create_evaluation(
    request: Request,
    who: Submitter,
    wf: WorkflowDep,
    front: Annotated[UploadFile, File(description="front photo")],
    back: Annotated[UploadFile, File(description="back photo")],
    device: Annotated[str | UploadFile, Form(description=DEVICE_FORM_HELP)],
    refurbisher_grade: Annotated[str, Form(description="the refurbisher's grade")],
    idempotency_key: IdempotencyKey = None,
    refurbisher_id: Annotated[str | None, Form(description="required for a platform key; "
                                               "a refurbisher key submits for itself")] = None,
    device_ref: Annotated[str | None, Form(max_length=DEVICE_REF_MAX, description="the "
                                           "platform's id of the device or listing")] = None,
    screen_condition: Annotated[str | None, Form(description="declared")] = None,
    shell_condition: Annotated[str | None, Form(description="declared")] = None,
    heatmaps: Annotated[bool, Form(description="damage heatmaps in this answer")] = False,
    quality_check: Annotated[bool, Form(description="check the photos before grading; "
                                        "only a platform key may send false")] = True,
) -> JSONResponse:
    limit = wf.settings.max_upload_bytes
    front_b = await read_upload(front, "front", limit)
    back_b = await read_upload(back, "back", limit)
    body, created, _ = await workflow.submit_evaluation(
        wf, who, front=front_b, back=back_b, device=await form_json_text(device, "device"),
        refurbisher_grade=refurbisher_grade, idempotency_key=idempotency_key,
        refurbisher_id=refurbisher_id, device_ref=device_ref,
        screen_condition=screen_condition, shell_condition=shell_condition, heatmaps=heatmaps,
        quality_check=quality_check, request_id=request.state.request_id)
    if not created:
        return JSONResponse(body, headers={"Idempotent-Replayed": "true"})
    return JSONResponse(body, status_code=201,
                        headers={"Location": f"/v1/evaluations/{body['id']}"})


@router.get("/evaluations", summary="Evaluations, newest first", response_model=EvaluationPage,
            responses=problems(404))
def list_evaluations(
    who: Reader,
    wf: WorkflowDep,
    status: Annotated[Status | None, Query()] = None,
    decision: Annotated[DecisionName | None, Query()] = None,
    refurbisher_id: Annotated[str | None, Query(max_length=64)] = None,
    since: Annotated[IsoDatetime | None, Query(description="created at or after")] = None,
    until: Annotated[IsoDatetime | None, Query(description="created before")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> dict[str, Any]:
    return evals.list_evaluations(wf.db, who, status=status, decision=decision,
                                  refurbisher_id=refurbisher_id, since=workflow.utc(since),
                                  until=workflow.utc(until), limit=limit, offset=offset)


@router.get("/evaluations/{evaluation_id}", summary="One evaluation",
            response_model=EvaluationOut, responses=problems(404))
def get_evaluation(who: Reader, wf: WorkflowDep, evaluation_id: EvaluationId) -> dict[str, Any]:
    return evals.load(wf.db, who, evaluation_id)


@router.get("/evaluations/{evaluation_id}/photos/{name}", response_class=FileResponse,
            summary="A photo of the evaluation: front, back or justification-N",
            responses={200: PHOTO_RESPONSE, **problems(404, 503)})
def get_photo(who: Reader, wf: WorkflowDep, evaluation_id: EvaluationId,
              name: Annotated[str, Path(max_length=32)]) -> Response:
    photo = workflow.photo(wf, who, evaluation_id, name)
    if photo is None:
        raise NotFound(f"name: evaluation {evaluation_id} has no photo {name!r} (front, back, "
                       "justification-N)", "name")
    return photo_response(wf.photos, photo.sha256, photo.media_type,
                          {"Cache-Control": PHOTO_CACHE, "ETag": f'"{photo.sha256}"'})


@router.post("/evaluations/{evaluation_id}/accept-suggestion", response_model=EvaluationOut,
             summary="Accept the model's grade (suggestion)", responses=problems(404, 409))
def accept_suggestion(who: RefurbisherKey, wf: WorkflowDep,
                      evaluation_id: EvaluationId) -> dict[str, Any]:
    return workflow.act(wf, who, evaluation_id, "accept-suggestion")


@router.post("/evaluations/{evaluation_id}/keep-grade", response_model=EvaluationOut,
             summary="Keep the refurbisher's grade (suggestion; flagged as kept)",
             responses=problems(404, 409))
def keep_grade(who: RefurbisherKey, wf: WorkflowDep,
               evaluation_id: EvaluationId) -> dict[str, Any]:
    return workflow.act(wf, who, evaluation_id, "keep-grade")


@router.post("/evaluations/{evaluation_id}/justification", status_code=201,
             response_model=EvaluationOut,
             summary="Justify a grade far from the model's: text and extra photos",
             responses=problems(404, 409, 415, 503))
async def justification(
    who: RefurbisherKey, wf: WorkflowDep, evaluation_id: EvaluationId,
    text: Annotated[str, Form(max_length=TEXT_MAX, description="why the grade is right")],
    photos: Annotated[list[UploadFile], File(description="at least one extra photo")],
) -> dict[str, Any]:
    limit = wf.settings.max_upload_bytes

    async def read(upload: UploadFile, i: int) -> bytes:
        return await read_upload(upload, f"photos[{i}]", limit)

    return await workflow.justify(wf, who, evaluation_id, text, photos, read)
