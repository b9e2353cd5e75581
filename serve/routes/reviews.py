"""Reviews of justified and inconclusive grades: a reviewer approves the refurbisher's grade
or overrides it.

    POST /v1/evaluations/{id}/approve                 reviewer
    POST /v1/evaluations/{id}/override                reviewer
"""

from typing import Any

from fastapi import APIRouter
from pydantic import Field

from serve import workflow
from serve.deps import EvaluationId, Reviewer, WorkflowDep
from serve.fields import TEXT_MAX
from serve.gate import KeyFirstRoute
from serve.openapi import problems
from serve.responses import EvaluationOut
from serve.routes.bodies import StrictBody

router = APIRouter(prefix="/v1", tags=["reviews"], route_class=KeyFirstRoute)


class ApproveBody(StrictBody):
    comment: str | None = Field(None, max_length=TEXT_MAX)


class OverrideBody(StrictBody):
    grade: str = Field(description="the reviewer's grade (final)")
    comment: str | None = Field(None, max_length=TEXT_MAX)


@router.post("/evaluations/{evaluation_id}/approve", response_model=EvaluationOut,
             summary="Approve a justified grade (final grade: the refurbisher's)",
             responses=problems(404, 409))
def approve(who: Reviewer, wf: WorkflowDep, evaluation_id: EvaluationId,
            body: ApproveBody | None = None) -> dict[str, Any]:
    return workflow.approve(wf, who, evaluation_id, body.comment if body else None)


@router.post("/evaluations/{evaluation_id}/override", response_model=EvaluationOut,
             summary="Override a justified grade with the reviewer's",
             responses=problems(404, 409, 503))
def override(who: Reviewer, wf: WorkflowDep, evaluation_id: EvaluationId,
             body: OverrideBody) -> dict[str, Any]:
    return workflow.override(wf, who, evaluation_id, body.grade, body.comment)
