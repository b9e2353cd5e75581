"""The dashboards as pages with SVG charts: a refurbisher's, and the platform's KPIs (with the
photo check: refused photos by reason, inconclusive decisions per week)."""

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import select

from serve import dashboard
from serve.deps import WorkflowDep
from serve.gate import KeyFirstRoute
from serve.models import Refurbisher
from serve.problems import NotFound
from serve.ui.charts import PAIR, bar_chart, hues, line_chart, stacked_bars
from serve.ui.pages import Reader, Staff, page, pretty

router = APIRouter(prefix="/ui", route_class=KeyFirstRoute)


@router.get("/dashboard")
def refurbisher_dashboard(request: Request, who: Reader, wf: WorkflowDep, days: int = 30,
                          refurbisher: str | None = None) -> HTMLResponse:
    days = max(1, min(366, days))
    rid = who.refurbisher_id if who.role == "refurbisher" else refurbisher
    with wf.db.read() as s:
        known = list(s.scalars(select(Refurbisher.id).order_by(Refurbisher.id)))
    if rid is None or rid not in known:
        if who.role == "refurbisher":
            raise NotFound("no dashboard for this refurbisher yet")
        return page(request, "choose.html", who, refurbishers=known, days=days)
    d = dashboard.refurbisher_dashboard(wf.db, rid, days)
    weekly = d["returns"]["weekly"]
    charts = {
        "returns": line_chart([w["week"] for w in weekly], {
            "your return rate": [w["return_rate"] for w in weekly],
            "market": [w["market_return_rate"] for w in weekly]},
            "Return rate per week of listing"),
        "reasons": bar_chart([(pretty(x["reason"]), x["returns"] + x["claims"])
                              for x in d["return_reasons"]], "Return and claim reasons"),
    }
    return page(request, "dashboard.html", who, d=d, charts=charts, days=days)


@router.get("/platform")
def platform(request: Request, who: Staff, wf: WorkflowDep, days: int = 30) -> HTMLResponse:
    days = max(1, min(366, days))
    policy = wf.policy
    d = dashboard.platform_dashboard(wf.db, policy, days)
    weekly, checks = d["predicted_grades_weekly"], d["photo_check_weekly"]
    reasons = [pretty(r) for r in d["photo_rejections"]]
    charts = {
        "gaps": bar_chart([(f"gap {g}", n) for g, n in d["gap_distribution"].items()],
                          "Distribution of gaps (steps between grades)"),
        "grades": stacked_bars([w["week"] for w in weekly], [w["grades"] for w in weekly],
                               list(policy.grades), "Predicted grades per week"),
        "claims": stacked_bars([w["week"] for w in d["claims_weekly"]], d["claims_weekly"],
                               ["returns", "claims"], "Returns and claims per week", list(PAIR)),
        "rejections": bar_chart([(pretty(r), n) for r, n in d["photo_rejections"].items()],
                                "Photos refused by reason", color=PAIR[0]),
        "inconclusive": stacked_bars([w["week"] for w in checks], checks, ["inconclusive"],
                                     "Inconclusive decisions per week", ["#455a64"]),
        "rejections_weekly": stacked_bars(
            [w["week"] for w in checks],
            [{pretty(r): n for r, n in w["rejections"].items()} for w in checks], reasons,
            "Photos refused per week, by reason", hues(len(reasons))),
    }
    return page(request, "platform.html", who, d=d, charts=charts, days=days)
