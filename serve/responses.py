"""The HTTP answers that carry a grade, as models: ``/openapi.json`` describes them exactly.

Grading: ``/v1/grade`` (:class:`GradeResponse`) and ``/v1/grade/batch``
(:class:`BatchResponse`). Evaluations (:class:`EvaluationOut`, as
:func:`serve.evaluations.to_dict` writes them) embed the stored :class:`~fusion.grade.Prediction`.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from fusion.grade import GradeResult, Prediction, ResultModel
from fusion.policy import Decision


class GradeResponse(GradeResult):
    """``POST /v1/grade``: the grade result and the request's id (first)."""

    _first = ("request_id",)
    request_id: str


class BatchProblem(BaseModel):
    """The problem that stopped one device of a batch (as a top-level problem's members)."""

    status: int
    type: str = Field(description="https://photograde.dev/problems/<kind>")
    detail: str
    field: str | None = None
    reason: str | None = Field(None, description="photo-rejected: the photo check's reason")


class BatchItem(ResultModel):
    """One device of a batch: its result, or the problem that stopped it."""

    _omit_if_none = frozenset({"result", "problem"})
    id: str
    ok: bool
    result: GradeResult | None = None
    problem: BatchProblem | None = None


class BatchResponse(BaseModel):
    request_id: str
    results: list[BatchItem]


class DeviceOut(BaseModel):
    brand: str
    model: str
    storage_gb: int
    unlocked: bool
    battery_health_pct: int | None = None
    checks: dict[str, bool]


class Declared(BaseModel):
    screen: str | None = None
    shell: str | None = None


class Agreement(BaseModel):
    screen: bool
    shell: bool
    functional: bool


class PhotoLink(BaseModel):
    sha256: str
    url: str


class EvaluationPhotos(BaseModel):
    front: PhotoLink
    back: PhotoLink


class JustificationOut(BaseModel):
    text: str
    created_at: str | None = None
    photos: list[PhotoLink]


class ReviewOut(BaseModel):
    action: str
    grade: str
    comment: str | None = None
    created_at: str | None = None


class ReturnOut(BaseModel):
    id: str
    evaluation_id: str
    kind: str
    reason: str
    comment: str | None = None
    occurred_at: str | None = None
    created_at: str | None = None


class EvaluationOut(ResultModel):
    """An evaluation: the device, both grades, the decision, the stored prediction and where
    the workflow stands (``heatmaps``: base64 PNG per part, when asked at submission)."""

    _omit_if_none = frozenset({"heatmaps", "inconclusive_reason"})
    id: str
    refurbisher_id: str
    device_ref: str | None = None
    device: DeviceOut
    declared: Declared
    refurbisher_grade: str
    predicted_grade: str
    confidence: float
    gap: int
    decision: Decision
    inconclusive_reason: str | None = Field(
        None, description="decision inconclusive: the least certain part decision and the "
                          "grade's confidence, against the threshold")
    agreement: Agreement
    prediction: Prediction
    bundle_version: str
    grading: str
    status: str
    resolution: str | None = None
    final_grade: str | None = None
    kept_grade: bool
    next_actions: list[str]
    photos: EvaluationPhotos
    justification: JustificationOut | None = None
    review: ReviewOut | None = None
    returns: list[ReturnOut]
    idempotency_key: str | None = None
    created_at: str | None = None
    updated_at: str | None = None
    listed_at: str | None = None
    heatmaps: dict[str, str] | None = None


class EvaluationPage(BaseModel):
    items: list[EvaluationOut]
    total: int
    limit: int
    offset: int
    next_offset: int | None = None
