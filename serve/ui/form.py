"""The evaluation form: the empty form, and its submission through the same service function
as ``POST /v1/evaluations``; a refused submission shows the form again with its values, and a
problem about one photo (the photo check's retake advice, an unreadable file) beside that
photo's input, a too long reference beside its own. (app.js sends the form in the background
when it can, so that a refused submission also keeps the photos it did not refuse: a page
cannot refill a file input.)"""

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel, Field
from starlette.datastructures import FormData, UploadFile

from serve import workflow
from serve.auth import Principal
from serve.deps import WorkflowDep
from serve.gate import KeyFirstRoute
from serve.problems import InvalidRequest, PhotoTooLarge, Problem
from serve.ui.advice import advice_for
from serve.ui.i18n import _
from serve.ui.pages import FORM_LABELS, Heatmaps, Submitter, page, readable
from tabular.schema import CHECK_LABELS
from vision.conditions import CONDITIONS
from vision.photocheck import PhotoCheckConfig

router = APIRouter(prefix="/ui", route_class=KeyFirstRoute)
TEXT_FIELDS = ("brand", "model", "storage_gb", "battery_health_pct", "screen_condition",
               "shell_condition", "refurbisher_grade", "refurbisher_id", "device_ref")
PHOTOS = ("front", "back")
#: The fields whose problem the form shows beside their input.
BESIDE = (*PHOTOS, "device_ref")


class FieldProblem(BaseModel):
    """What the form shows beside one field's input (a photo's, the reference's)."""

    field: str
    detail: str = Field(description="what is wrong (for a photo: how to retake it), without "
                        "the label")
    reason: str | None = Field(None, description="the photo check's reason code, if any")

    @property
    def message(self) -> str:
        """The detail as a sentence, beside the field."""
        return self.detail[:1].upper() + self.detail[1:]

    @property
    def summary(self) -> str:
        """The detail after the field's label, at the top of the form."""
        return f"{_(FORM_LABELS[self.field])}: {self.detail}"


def field_problem(p: Problem, cfg: PhotoCheckConfig | None = None) -> FieldProblem | None:
    """The problem as a message beside the field it names (a photo, the reference), or None;
    a photo refused by the photo check gets its retake advice in the page's language (with
    ``cfg``'s thresholds; the problem's own English detail for an unknown reason)."""
    if p.field not in BESIDE:
        return None
    detail = p.detail
    for prefix in (p.field, FORM_LABELS[p.field], _(FORM_LABELS[p.field])):
        detail = detail.removeprefix(f"{prefix}:").strip()
    reason = p.extra.get("reason")
    advice = (advice_for(str(reason), p.field, cfg or PhotoCheckConfig())
              if reason is not None else None)
    return FieldProblem(field=p.field, detail=advice or detail,
                        reason=None if reason is None else str(reason))


def form_page(request: Request, who: Principal, values: dict[str, Any],
              problem: Problem | None = None) -> HTMLResponse:
    """The form with ``values``; with a refused submission's ``problem``, a 422 that shows it
    at the top and, when it is about one photo or the reference, beside that field."""
    cfg = request.app.state.service.settings.photo_check_thresholds
    beside = field_problem(problem, cfg) if problem else None
    error = beside.summary if beside else readable(problem) if problem else None
    return page(request, "form.html", who, 422 if problem else 200, values=values, error=error,
                field_problem=beside, grades=list(request.app.state.workflow.policy.grades),
                checks=CHECK_LABELS, conditions=CONDITIONS)


async def photo_bytes(upload: Any, label: str, limit: int, name: str | None = None) -> bytes:
    """An uploaded photo's bytes; a readable error (about field ``name``) when missing, empty
    or too large."""
    if not isinstance(upload, UploadFile) or not upload.filename:
        raise InvalidRequest(label + ": " + _("choose a photo"), name)
    data = await upload.read(limit + 1)
    if len(data) > limit:
        too_big = _("larger than the limit of %(mb)d MB") % {"mb": limit // (1024 * 1024)}
        raise PhotoTooLarge(f"{label}: {too_big}", name)
    if not data:
        raise InvalidRequest(label + ": " + _("the file is empty"), name)
    return data


def _int(text: str, label: str, optional: bool = False) -> int | None:
    if not text and optional:
        return None
    try:
        return int(text)
    except ValueError:
        raise InvalidRequest(label + ": " + _("enter a whole number")) from None


def _values(form: FormData) -> dict[str, Any]:
    """The form's values, as typed (shown again when the submission is refused)."""
    values: dict[str, Any] = {k: str(form.get(k) or "").strip() for k in TEXT_FIELDS}
    values["unlocked"] = form.get("unlocked") is not None
    values["checks"] = [c for c in CHECK_LABELS if form.get(f"check_{c}") is not None]
    return values


def _device(values: dict[str, Any]) -> dict[str, Any]:
    return {"brand": values["brand"], "model": values["model"],
            "storage_gb": _int(values["storage_gb"], _("Storage capacity (GB)")),
            "unlocked": values["unlocked"],
            "battery_health_pct": _int(values["battery_health_pct"], _("Battery health (%)"),
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
        photos = [await photo_bytes(form.get(name), _(FORM_LABELS[name]), limit, name)
                  for name in PHOTOS]
        device = _device(values)
        if not values["refurbisher_grade"]:
            raise InvalidRequest(_("Overall grade: choose a grade"))
        body, _status, maps = await workflow.submit_evaluation(
            wf, who, front=photos[0], back=photos[1], device=device,
            refurbisher_grade=values["refurbisher_grade"],
            refurbisher_id=values["refurbisher_id"] or None,
            device_ref=values["device_ref"] or None,
            screen_condition=values["screen_condition"] or None,
            shell_condition=values["shell_condition"] or None, heatmaps=True,
            route="/ui/evaluations", request_id=request.state.request_id)
    except Problem as p:
        if p.status in (401, 429):
            raise
        return form_page(request, who, values, p)
    heatmaps.put_b64(body["id"], maps)
    return RedirectResponse(f"/ui/evaluations/{body['id']}", status_code=303)
