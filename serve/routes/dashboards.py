"""Dashboard data (JSON) over the last ``days`` days.

    GET  /v1/dashboard/refurbisher/{id}?days=30       refurbisher (own), platform, reviewer
    GET  /v1/dashboard/platform?days=30               platform, reviewer
    GET  /v1/dashboard/model-health?days=30&bucket=week   platform, reviewer

Another refurbisher's dashboard answers 404, exactly like one that does not exist.
"""

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query

from serve import dashboard, model_health, workflow
from serve.deps import Days, Reader, ServiceDep, Staff, WorkflowDep
from serve.gate import KeyFirstRoute
from serve.openapi import problems

router = APIRouter(prefix="/v1", tags=["dashboards"], route_class=KeyFirstRoute)


@router.get("/dashboard/refurbisher/{refurbisher_id}",
            summary="One refurbisher's dashboard data", responses=problems(404))
def refurbisher_dashboard(who: Reader, wf: WorkflowDep,
                          refurbisher_id: Annotated[str, Path(max_length=64)],
                          days: Days = 30) -> dict[str, Any]:
    return workflow.refurbisher_dashboard(wf, who, refurbisher_id, days)


@router.get("/dashboard/platform", summary="The platform's KPI data",
            responses=problems(503))
def platform_dashboard(who: Staff, wf: WorkflowDep, days: Days = 30) -> dict[str, Any]:
    return dashboard.platform_dashboard(wf.db, wf.policy, days)


Bucket = Annotated[Literal["week", "day"], Query(description="ISO weeks or UTC days")]


@router.get("/dashboard/model-health", summary="The model's health per bundle version",
            responses=problems(503))
def model_health_dashboard(who: Staff, wf: WorkflowDep, svc: ServiceDep, days: Days = 30,
                           bucket: Bucket = "week") -> dict[str, Any]:
    """Per bundle version and bucket: the predicted-grade distribution, mean confidence,
    inconclusive rate and outcomes (disagreement with final grades, false positives and
    negatives against reviewers); photo refusals by reason per bucket; and ``serving``: the
    drift window of this process for the bundle it serves (PSI against its reference)."""
    data = model_health.model_health(wf.db, wf.policy.grades, days, bucket)
    version = svc.loaded.manifest.bundle_version
    return {**data, "serving": {"bundle_version": version,
                                "window": svc.metrics.window_summary(version)}}
