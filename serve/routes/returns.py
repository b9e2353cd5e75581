"""Returns and claims on listed devices, reported by the platform.

    POST /v1/returns                                  platform

Idempotent with an ``Idempotency-Key`` header, like ``POST /v1/evaluations``.
"""

from typing import Literal

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import Field

from serve import evaluations as evals
from serve import workflow
from serve.deps import IdempotencyKey, Platform, WorkflowDep
from serve.fields import TEXT_MAX, IsoDatetime
from serve.gate import KeyFirstRoute
from serve.models import RETURN_KINDS
from serve.openapi import problems
from serve.responses import ReturnOut
from serve.routes.bodies import StrictBody
from tabular.schema import RETURN_REASONS

router = APIRouter(prefix="/v1", tags=["returns"], route_class=KeyFirstRoute)


class ReturnBody(StrictBody):
    evaluation_id: str = Field(min_length=1, max_length=64)
    kind: Literal[RETURN_KINDS] = "return"  # type: ignore[valid-type]
    reason: str = Field(min_length=1, max_length=64, json_schema_extra={
        "enum": list(RETURN_REASONS)}, description="one of the server's return_reasons "
        "setting; by default these")
    comment: str | None = Field(None, max_length=TEXT_MAX)
    occurred_at: IsoDatetime | None = Field(None, description="default: now; ISO 8601, UTC "
                                            "when no offset is given")


@router.post("/returns", status_code=201,
             summary="Report a return or a claim on a listed device (idempotent)",
             response_model=ReturnOut, responses={
                 200: {"description": "A retry with the same Idempotency-Key: the stored "
                       "answer", "model": ReturnOut, "headers": {"Idempotent-Replayed": {
                           "schema": {"type": "string", "enum": ["true"]}, "required": True}}},
                 **problems(404, 409)})
def report_return(who: Platform, wf: WorkflowDep, body: ReturnBody,
                  idempotency_key: IdempotencyKey = None) -> JSONResponse:
    row, created = workflow.report_return(
        wf, who, evaluation_id=body.evaluation_id, kind=body.kind, reason=body.reason,
        comment=body.comment, occurred_at=body.occurred_at, idempotency_key=idempotency_key)
    if not created:
        return JSONResponse(evals.return_dict(row), headers={"Idempotent-Replayed": "true"})
    return JSONResponse(evals.return_dict(row), status_code=201)
