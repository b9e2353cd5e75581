"""Dashboard data (JSON) over the last ``days`` days.

    GET  /v1/dashboard/refurbisher/{id}?days=30       refurbisher (own), platform, reviewer
    GET  /v1/dashboard/platform?days=30               platform, reviewer

Another refurbisher's dashboard answers 404, exactly like one that does not exist.
"""

from typing import Annotated, Any

from fastapi import APIRouter, Path

from serve import dashboard, workflow
from serve.deps import Days, Reader, Staff, WorkflowDep
from serve.gate import KeyFirstRoute

router = APIRouter(prefix="/v1", tags=["dashboards"], route_class=KeyFirstRoute)


@router.get("/dashboard/refurbisher/{refurbisher_id}",
            summary="One refurbisher's dashboard data")
def refurbisher_dashboard(who: Reader, wf: WorkflowDep,
                          refurbisher_id: Annotated[str, Path(max_length=64)],
                          days: Days = 30) -> dict[str, Any]:
    return workflow.refurbisher_dashboard(wf, who, refurbisher_id, days)


@router.get("/dashboard/platform", summary="The platform's KPI data")
def platform_dashboard(who: Staff, wf: WorkflowDep, days: Days = 30) -> dict[str, Any]:
    return dashboard.platform_dashboard(wf.db, wf.policy, days)
