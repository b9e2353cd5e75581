"""The dashboards as pages with SVG charts: a refurbisher's, the platform's KPIs (with the
photo check: refused photos by reason, inconclusive decisions per week) and the model's health
(per bundle version: grades, confidence, inconclusive, disagreement; the drift window)."""

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import select

from serve import dashboard, model_health
from serve.deps import ServiceDep, WorkflowDep
from serve.gate import KeyFirstRoute
from serve.models import Refurbisher
from serve.problems import NotFound
from serve.ui.charts import PAIR, bar_chart, hues, line_chart, stacked_bars
from serve.ui.i18n import _
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
            raise NotFound(_("no dashboard for this refurbisher yet"))
        return page(request, "choose.html", who, refurbishers=known, days=days)
    d = dashboard.refurbisher_dashboard(wf.db, rid, days)
    weekly = d["returns"]["weekly"]
    charts = {
        "returns": line_chart([w["week"] for w in weekly], {
            _("your return rate"): [w["return_rate"] for w in weekly],
            _("market"): [w["market_return_rate"] for w in weekly]},
            _("Return rate per week of listing"),
            counts=[(w["returned"], w["listed"]) for w in weekly]),
        "reasons": bar_chart([(pretty(x["reason"]), x["returns"] + x["claims"])
                              for x in d["return_reasons"]], _("Return and claim reasons")),
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
        "gaps": bar_chart([(_("gap %(n)s") % {"n": g}, n)
                           for g, n in d["gap_distribution"].items()],
                          _("Distribution of gaps (steps between grades)")),
        "grades": stacked_bars([w["week"] for w in weekly], [w["grades"] for w in weekly],
                               list(policy.grades), _("Predicted grades per week")),
        "claims": stacked_bars([w["week"] for w in d["claims_weekly"]], d["claims_weekly"],
                               ["returns", "claims"], _("Returns and claims per week"), list(PAIR)),
        "rejections": bar_chart([(pretty(r), n) for r, n in d["photo_rejections"].items()],
                                _("Photos refused by reason"), color=PAIR[0]),
        "inconclusive": stacked_bars([w["week"] for w in checks], checks, ["inconclusive"],
                                     _("Inconclusive decisions per week"), ["#455a64"]),
        "rejections_weekly": stacked_bars(
            [w["week"] for w in checks],
            [{pretty(r): n for r, n in w["rejections"].items()} for w in checks], reasons,
            _("Photos refused per week, by reason"), hues(len(reasons))),
    }
    return page(request, "platform.html", who, d=d, charts=charts, days=days)


def _ticks(labels: list[str], most: int = 8) -> list[str]:
    """Every k-th label, the others blank, so that at most ``most`` are written on an axis."""
    k = -(-len(labels) // most)
    return [label if i % k == 0 else "" for i, label in enumerate(labels)]


def _health_charts(d: dict[str, Any]) -> dict[str, Any]:
    day = d["bucket"] == "day"  # days as MM-DD on the axis
    labels = _ticks([b["start"][5:] if day else b["bucket"] for b in d["buckets"]])
    series = d["series"]

    def per_version(key: str) -> dict[str, list[float | None]]:
        return {v: [b[key] for b in points] for v, points in series.items()}

    rejections = d["photo_rejections"]
    reasons = [pretty(r) for r in d["reasons"]]
    return {
        "confidence": line_chart(labels, per_version("mean_confidence"),
                                 _("Mean confidence per bundle version")),
        "inconclusive": line_chart(labels, per_version("inconclusive_rate"),
                                   _("Inconclusive rate per bundle version")),
        "disagreement": line_chart(labels, per_version("disagreement_rate"),
                                   _("Final grades that differ from the model's, per "
                                     "bundle version")),
        "grades": [(v, stacked_bars(labels, [b["grades"] for b in points], d["grades"],
                                    _("Predicted grades, bundle %(v)s") % {"v": v}))
                   for v, points in series.items()],
        "rejections": stacked_bars(
            labels, [{pretty(r): n for r, n in b["reasons"].items()} for b in rejections],
            reasons, _("Photos refused, by reason (all versions)"), hues(len(reasons))),
        "rejection_rate": line_chart(labels, {_("refused"): [b["rejection_rate"]
                                                          for b in rejections]},
                                     _("Share of submissions refused by the photo check")),
    }


@router.get("/model-health")
def model_health_page(request: Request, who: Staff, wf: WorkflowDep, svc: ServiceDep,
                      days: int = 30, bucket: str = "week") -> HTMLResponse:
    days = max(1, min(366, days))
    bucket = bucket if bucket in model_health.BUCKETS else "week"
    d = model_health.model_health(wf.db, wf.policy.grades, days, bucket)
    version = svc.loaded.manifest.bundle_version
    live = svc.metrics.window_summary(version)
    refused = (sum(live["photo_rejection_rate"].values())
               if live and live["photo_checks"] else None)
    return page(request, "model_health.html", who, d=d, charts=_health_charts(d), days=days,
                bucket=bucket, live=live, serving=version, refused=refused)
