"""The review queue: justified and inconclusive grades, approved or overridden by a reviewer."""

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, Response

from serve import workflow
from serve.auth import Principal
from serve.deps import WorkflowDep
from serve.gate import KeyFirstRoute
from serve.problems import Problem
from serve.ui.evaluations import back_to, evaluation_page, list_page
from serve.ui.i18n import N_
from serve.ui.pages import Reviewer, Staff
from serve.workflow import Workflow

router = APIRouter(prefix="/ui", route_class=KeyFirstRoute)


@router.get("/reviews")
def reviews(request: Request, who: Staff) -> HTMLResponse:
    return list_page(request, who, N_("Review queue: justified and inconclusive grades"),
                     status="in_review", empty=N_("Nothing to review: no justified or "
                                                  "inconclusive grade is waiting."))


async def review(request: Request, evaluation_id: str, who: Principal, wf: Workflow,
                 action: str) -> Response:
    """Approve or override with the form's comment (and grade); a refused comment or grade
    is shown beside it on the evaluation's page, with what was typed."""
    form = await request.form()
    comment = str(form.get("comment") or "").strip()
    try:
        if action == "approve":
            await run_in_threadpool(workflow.approve, wf, who, evaluation_id, comment or None)
        else:
            await run_in_threadpool(workflow.override, wf, who, evaluation_id,
                                    str(form.get("grade") or ""), comment or None)
    except Problem as p:
        if p.status != 422:
            raise
        return await run_in_threadpool(evaluation_page, request, who, evaluation_id, p,
                                       comment=comment, sent=action)
    return back_to(evaluation_id)


@router.post("/evaluations/{evaluation_id}/approve")
async def approve(request: Request, evaluation_id: str, who: Reviewer,
                  wf: WorkflowDep) -> Response:
    return await review(request, evaluation_id, who, wf, "approve")


@router.post("/evaluations/{evaluation_id}/override")
async def override(request: Request, evaluation_id: str, who: Reviewer,
                   wf: WorkflowDep) -> Response:
    return await review(request, evaluation_id, who, wf, "override")
