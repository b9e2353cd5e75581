"""Evaluations in the UI: the list, one evaluation (outcome and why), the refurbisher's answers
(accept, keep, justify), its photos and damage heatmaps. Actions go through the workflow's
service functions, as the API's do."""

import asyncio

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.datastructures import UploadFile

from serve import evaluations as evals
from serve import workflow
from serve.auth import Principal
from serve.deps import WorkflowDep
from serve.gate import KeyFirstRoute
from serve.headers import PHOTO_CACHE
from serve.models import DECISIONS, STATUSES
from serve.photostore import photo_response
from serve.problems import NotFound, Problem
from serve.ui import listing
from serve.ui.form import photo_bytes
from serve.ui.heatmaps import heatmap_png
from serve.ui.i18n import N_, _
from serve.ui.pages import LABELS, Heatmaps, Reader, RefurbisherKey, page, readable
from tabular.schema import CHECK_LABELS
from vision.conditions import CONDITIONS

router = APIRouter(prefix="/ui", route_class=KeyFirstRoute)


def list_page(request: Request, who: Principal, title: str, status: str | None = None,
              empty: str | None = None) -> HTMLResponse:
    """A page of evaluations with its filters and paging (``status``: fixed by the page, as
    the review queue's; ``empty``: what to say when there is none); a bad filter value is a
    422 page that says which and how to fix it."""
    try:
        f = listing.parse(request.query_params, status)
    except listing.BadFilter as e:
        return page(request, "list.html", who, 422, title=_(title), items=[], total=0,
                    f=listing.Filters(status=status), error=str(e), bad=e.field,
                    fixed_status=status, path=request.url.path, pages=None,
                    statuses=STATUSES, decisions=DECISIONS, per_page=listing.LIMITS)
    found = evals.list_evaluations(request.app.state.workflow.db, who, **f.query())
    total, shown = found["total"] or 0, len(found["items"])
    path = request.url.path
    pages = {"first": f.offset + 1 if shown else 0, "last": f.offset + shown, "total": total,
             "prev": f.href(path, max(0, f.offset - f.limit)) if f.offset else None,
             "next": f.href(path, f.offset + f.limit) if found["next_offset"] else None}
    filtered = any((f.decision, f.date_from, f.date_to, f.status and not status))
    return page(request, "list.html", who, title=_(title), items=found["items"], total=total,
                f=f, error=None, bad=None, fixed_status=status, path=path, pages=pages,
                filtered=filtered, empty=_(empty) if empty else None, statuses=STATUSES,
                decisions=DECISIONS, per_page=listing.LIMITS)


def evaluation_page(request: Request, who: Principal, evaluation_id: str,
                    problem: Problem | None = None, text: str = "", comment: str = "",
                    sent: str | None = None) -> HTMLResponse:
    """The evaluation; with a refused ``problem`` (a 422), it is shown above the form that was
    ``sent`` (None: the justification's, else the review's ``approve`` or ``override``) and
    beside the field it names (``text``, ``photos``, ``comment``), with the typed ``text`` or
    ``comment`` kept."""
    wf = request.app.state.workflow
    ev = evals.load(wf.db, who, evaluation_id)
    field = problem.field if problem else None
    return page(request, "evaluation.html", who, 422 if problem else 200, ev=ev,
                label=_(LABELS[ev["decision"]]), error=readable(problem) if problem else None,
                field=field.split("[")[0] if field else None, text=text, comment=comment,
                sent=sent, grades=list(wf.policy.grades), checks=CHECK_LABELS,
                min_chars=wf.settings.justification_min_chars)


def back_to(evaluation_id: str) -> RedirectResponse:
    return RedirectResponse(f"/ui/evaluations/{evaluation_id}", status_code=303)


@router.get("/evaluations")
def evaluation_list(request: Request, who: Reader) -> HTMLResponse:
    return list_page(request, who, N_("Recent evaluations"))


@router.get("/evaluations/{evaluation_id}")
def evaluation(request: Request, evaluation_id: str, who: Reader) -> HTMLResponse:
    return evaluation_page(request, who, evaluation_id)


@router.post("/evaluations/{evaluation_id}/accept-suggestion")
def accept(evaluation_id: str, who: RefurbisherKey, wf: WorkflowDep) -> Response:
    workflow.act(wf, who, evaluation_id, "accept-suggestion")
    return back_to(evaluation_id)


@router.post("/evaluations/{evaluation_id}/keep-grade")
def keep(evaluation_id: str, who: RefurbisherKey, wf: WorkflowDep) -> Response:
    workflow.act(wf, who, evaluation_id, "keep-grade")
    return back_to(evaluation_id)


@router.post("/evaluations/{evaluation_id}/justification")
async def justify(request: Request, evaluation_id: str, who: RefurbisherKey,
                  wf: WorkflowDep) -> Response:
    form = await request.form()
    text = str(form.get("text") or "").strip()
    uploads = [f for f in form.getlist("photos") if isinstance(f, UploadFile) and f.filename]
    limit = wf.settings.max_upload_bytes

    async def read(upload: UploadFile, i: int) -> bytes:
        return await photo_bytes(upload, _("Additional photo %(n)d") % {"n": i + 1}, limit)

    try:
        await workflow.justify(wf, who, evaluation_id, text, uploads, read)
    except Problem as p:
        if p.status in (401, 404, 409, 429):
            raise
        return await run_in_threadpool(evaluation_page, request, who, evaluation_id, p, text)
    return back_to(evaluation_id)


@router.get("/evaluations/{evaluation_id}/photos/{name}")
def photo(evaluation_id: str, name: str, who: Reader, wf: WorkflowDep) -> Response:
    row = workflow.photo(wf, who, evaluation_id, name)
    if row is None:
        raise NotFound(f"no photo {name!r} for this evaluation")
    return photo_response(wf.photos, row.sha256, row.media_type,
                          {"Cache-Control": PHOTO_CACHE})


@router.get("/evaluations/{evaluation_id}/heatmaps/{part}.png")
async def heatmap(evaluation_id: str, part: str, who: Reader, wf: WorkflowDep,
                  cache: Heatmaps) -> Response:
    if part not in CONDITIONS:
        raise NotFound(f"no part {part!r} (screen, shell)")

    def digest() -> str:
        with wf.db.read() as s:
            ev = evals.get_visible(s, who, evaluation_id)
            return ev.front_sha256 if part == "screen" else ev.back_sha256

    sha = await run_in_threadpool(digest)
    png = cache.get((evaluation_id, part))
    if png is None:
        grader = wf.svc.loaded
        data = await asyncio.to_thread(wf.photos.get, sha)
        png = await asyncio.to_thread(heatmap_png, grader, data, part)
        cache.put((evaluation_id, part), png)
    return Response(png, media_type="image/png",
                    headers={"Cache-Control": PHOTO_CACHE})
