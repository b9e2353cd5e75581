"""The evaluation form: the empty form, and its submission through the same service function
as ``POST /v1/evaluations``; a refused submission shows the form again with its values."""

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.datastructures import FormData, UploadFile

from serve import workflow
from serve.auth import Principal
from serve.deps import WorkflowDep
from serve.problems import InvalidRequest, PhotoTooLarge, Problem
from serve.ui.pages import Heatmaps, Submitter, page, readable
from tabular.schema import CHECK_LABELS
from vision.conditions import CONDITIONS

router = APIRouter(prefix="/ui")
TEXT_FIELDS = ("brand", "model", "storage_gb", "battery_health_pct", "screen_condition",
               "shell_condition", "refurbisher_grade", "refurbisher_id", "device_ref")


def form_page(request: Request, who: Principal, values: dict[str, Any],
              error: str | None = None) -> HTMLResponse:
    return page(request, "form.html", who, 422 if error else 200, values=values, error=error,
                grades=list(request.app.state.workflow.policy.grades), checks=CHECK_LABELS,
                conditions=CONDITIONS)


async def photo_bytes(upload: Any, label: str, limit: int) -> bytes:
    """An uploaded photo's bytes; a readable error when missing, empty or too large."""
    if not isinstance(upload, UploadFile) or not upload.filename:
        raise InvalidRequest(f"{label}: choose a photo")
    data = await upload.read(limit + 1)
    if len(data) > limit:
        raise PhotoTooLarge(f"{label}: larger than the limit of {limit // (1024 * 1024)} MB")
    if not data:
        raise InvalidRequest(f"{label}: the file is empty")
    return data


def _int(text: str, label: str, optional: bool = False) -> int | None:
    if not text and optional:
        return None
    try:
        return int(text)
    except ValueError:
        raise InvalidRequest(f"{label}: enter a whole number") from None


def _values(form: FormData) -> dict[str, Any]:
    """The form's values, as typed (shown again when the submission is refused)."""
    values: dict[str, Any] = {k: str(form.get(k) or "").strip() for k in TEXT_FIELDS}
    values["unlocked"] = form.get("unlocked") is not None
    values["checks"] = [c for c in CHECK_LABELS if form.get(f"check_{c}") is not None]
    return values


def _device(values: dict[str, Any]) -> dict[str, Any]:
    return {"brand": values["brand"], "model": values["model"],
            "storage_gb": _int(values["storage_gb"], "Storage capacity (GB)"),
            "unlocked": values["unlocked"],
            "battery_health_pct": _int(values["battery_health_pct"], "Battery health (%)",
                                       optional=True),
            "checks": {c: c in values["checks"] for c in CHECK_LABELS}}


@router.get("/evaluations/new")
async def new_evaluation(request: Request, who: Submitter) -> HTMLResponse:
    return form_page(request, who, {"checks": list(CHECK_LABELS), "unlocked": True})


@router.post("/evaluations")
async def create(request: Request, who: Submitter, wf: WorkflowDep,
                 heatmaps: Heatmaps) -> Response:
    form = await request.form()
    values = _values(form)
    limit = wf.settings.max_upload_bytes
    try:
        photos = [await photo_bytes(form.get(name), label, limit)
                  for name, label in (("front", "Front photo"), ("back", "Back photo"))]
        device = _device(values)
        if not values["refurbisher_grade"]:
            raise InvalidRequest("Overall grade: choose a grade")
        body, _, maps = await workflow.submit_evaluation(
            wf, who, front=photos[0], back=photos[1], device=device,
            refurbisher_grade=values["refurbisher_grade"],
            refurbisher_id=values["refurbisher_id"] or None,
            device_ref=values["device_ref"] or None,
            screen_condition=values["screen_condition"] or None,
            shell_condition=values["shell_condition"] or None, heatmaps=True)
    except Problem as p:
        if p.status in (401, 429):
            raise
        return form_page(request, who, values, readable(p))
    heatmaps.put_b64(body["id"], maps)
    return RedirectResponse(f"/ui/evaluations/{body['id']}", status_code=303)
