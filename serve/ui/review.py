"""The review queue: justified and inconclusive grades, approved or overridden by a reviewer."""

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, Response

from serve import workflow
from serve.deps import WorkflowDep
from serve.gate import KeyFirstRoute
from serve.ui.evaluations import back_to, list_page
from serve.ui.pages import Reviewer, Staff

router = APIRouter(prefix="/ui", route_class=KeyFirstRoute)


@router.get("/reviews")
def reviews(request: Request, who: Staff) -> HTMLResponse:
    return list_page(request, who, "Review queue: justified and inconclusive grades",
                     status="in_review")


@router.post("/evaluations/{evaluation_id}/approve")
async def approve(request: Request, evaluation_id: str, who: Reviewer,
                  wf: WorkflowDep) -> Response:
    comment = str((await request.form()).get("comment") or "").strip() or None
    await run_in_threadpool(workflow.approve, wf, who, evaluation_id, comment)
    return back_to(evaluation_id)


@router.post("/evaluations/{evaluation_id}/override")
async def override(request: Request, evaluation_id: str, who: Reviewer,
                   wf: WorkflowDep) -> Response:
    form = await request.form()
    await run_in_threadpool(workflow.override, wf, who, evaluation_id,
                            str(form.get("grade") or ""),
                            str(form.get("comment") or "").strip() or None)
    return back_to(evaluation_id)
