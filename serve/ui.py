"""The web UI under ``/ui``: server-rendered HTML (Jinja2), a small CSS file, SVG charts.

    GET  /ui/login, POST /ui/login, POST /ui/logout   paste an API key (HttpOnly cookie)
    GET  /ui                                          home (by role)
    GET  /ui/evaluations/new, POST /ui/evaluations    the evaluation form     refurbisher, platform
    GET  /ui/evaluations                              recent evaluations      refurbisher, staff
    GET  /ui/evaluations/{id}                         the outcome and why     refurbisher, staff
    POST /ui/evaluations/{id}/accept-suggestion|keep-grade|justification     refurbisher
    POST /ui/evaluations/{id}/approve|override                               reviewer
    GET  /ui/evaluations/{id}/photos/{name}, /ui/evaluations/{id}/heatmaps/{part}.png
    GET  /ui/dashboard[?days&refurbisher]             refurbisher dashboard   refurbisher, staff
    GET  /ui/platform[?days]                          platform KPIs           platform, reviewer
    GET  /ui/reviews                                  the review queue        reviewer, platform

The key is checked on every request with the API's rules (serve/auth.py): the same roles, the
same tenant isolation (another refurbisher's evaluation is a 404), the same rate limit. A POST
sent from another origin's page is refused (``same_origin``).
Evaluations and actions go through the same service functions as the JSON API.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from sqlalchemy import select
from starlette.datastructures import UploadFile

from serve import dashboard
from serve import evaluations as evals
from serve.auth import OPEN, Principal, authenticate
from serve.models import Photo, Refurbisher
from serve.problems import Problem
from serve.ui_charts import PAIR, bar_chart, line_chart, stacked_bars
from serve.ui_heatmaps import HeatmapCache, heatmap_png
from serve.workflow_api import submit_evaluation
from tabular.schema import CHECK_LABELS
from vision.conditions import CONDITIONS

if TYPE_CHECKING:
    from serve.workflow_api import Workflow

COOKIE = "photograde_key"
HERE = Path(__file__).parent
LABELS = {"validated": "Grade validated", "suggestion": "Different grade suggested",
          "justification_required": "Justification required"}


class LoginRequired(Exception):
    """No valid key in the cookie: go to the login page."""


def _pretty(value: str | None) -> str:
    return (value or "-").replace("_", " ")


def mount_ui(app: FastAPI, wf: Workflow) -> None:
    """Add the UI's routes, static files, ``/`` -> ``/ui`` and its error pages to ``app``."""
    templates = Jinja2Templates(directory=HERE / "templates")
    templates.env.filters["pretty"] = _pretty
    templates.env.filters["pct"] = lambda v: "-" if v is None else f"{100 * v:.0f}%"
    app.mount("/ui/static", StaticFiles(directory=HERE / "static"), name="ui-static")
    cache = HeatmapCache()
    app.include_router(_router(wf, templates, cache))

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse("/ui", status_code=307)

    api_problem = app.exception_handlers[Problem]

    async def on_problem(request: Request, p: Problem) -> Response:
        if not request.url.path.startswith("/ui"):
            return await api_problem(request, p)
        if p.status == 401:
            return RedirectResponse("/ui/login", status_code=303)
        return templates.TemplateResponse(request, "error.html", {
            **_base(wf, None), "status": p.status, "message": p.detail}, status_code=p.status)

    async def on_login(request: Request, exc: LoginRequired) -> Response:
        return RedirectResponse("/ui/login", status_code=303)

    app.add_exception_handler(Problem, on_problem)
    app.add_exception_handler(LoginRequired, on_login)


def _base(wf: Workflow, who: Principal | None) -> dict[str, Any]:
    g = wf.svc.grader
    return {"who": who, "demo": bool(g and g.manifest.demo),
            "bundle_version": g.manifest.bundle_version if g else None}


async def same_origin(request: Request) -> None:
    """Refuse a state-changing UI request sent by another origin's page (cross-site request
    forgery). The key cookie is SameSite=Strict, but a sibling subdomain is the "same site" and
    old browsers ignore SameSite: the browser's own Sec-Fetch-Site and Origin headers say where
    the form was (a page's origin must match the Host, or a proxy's X-Forwarded-Host, header:
    forms cannot set either). Clients that send neither (curl, scripts) need the key anyway."""
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return
    fetch_site = request.headers.get("sec-fetch-site")
    origin = request.headers.get("origin")
    hosts = {request.headers.get("host"), request.headers.get("x-forwarded-host")} - {None}
    if fetch_site in ("cross-site", "same-site") or (
            origin is not None and urlsplit(origin).netloc not in hosts):
        raise Problem(403, "cross-origin-request",
                      f"this form was sent from another site ({origin or fetch_site}); open "
                      f"photograde's own page and send it from there")


def _router(wf: Workflow, templates: Jinja2Templates, cache: HeatmapCache) -> APIRouter:
    r = APIRouter(prefix="/ui", include_in_schema=False, dependencies=[Depends(same_origin)])
    limit = int(wf.settings.max_upload_mb * 1024 * 1024)

    def require(*roles: str):
        async def principal(request: Request) -> Principal:
            if not wf.settings.auth_required:
                return OPEN
            key = request.cookies.get(COOKIE)
            if not key:
                raise LoginRequired()
            try:
                who = await run_in_threadpool(authenticate, wf.db, key)
            except Problem:
                raise LoginRequired() from None
            wf.limiter.check(who.key_id or "")
            if not who.has(*roles):
                raise Problem(403, "forbidden", f"this page needs a {' or '.join(roles)} key; "
                              f"you are signed in with a {who.role} key")
            return who
        return Depends(principal)

    submitter = require("refurbisher", "platform")
    reader = require("refurbisher", "platform", "reviewer")
    refurbisher = require("refurbisher")
    reviewer = require("reviewer")
    staff = require("platform", "reviewer")
    anyone = require("refurbisher", "platform", "reviewer", "admin")

    def page(request: Request, name: str, who: Principal | None, status: int = 200,
             **context: Any) -> HTMLResponse:
        return templates.TemplateResponse(request, name, {**_base(wf, who), **context},
                                          status_code=status)

    # -- login -----------------------------------------------------------------------------
    @r.get("/login")
    async def login_page(request: Request) -> HTMLResponse:
        return page(request, "login.html", None)

    @r.post("/login")
    async def login(request: Request) -> Response:
        form = await request.form()
        key = str(form.get("key") or "").strip()
        try:
            await run_in_threadpool(authenticate, wf.db, key)
        except Problem as p:
            return page(request, "login.html", None, 401, error=p.detail)
        response = RedirectResponse("/ui", status_code=303)
        response.set_cookie(COOKIE, key, httponly=True, samesite="strict", path="/",
                            secure=request.url.scheme == "https")
        return response

    @r.post("/logout")
    async def logout() -> Response:
        response = RedirectResponse("/ui/login", status_code=303)
        response.delete_cookie(COOKIE, path="/")
        return response

    @r.get("")
    async def home(request: Request, who: Principal = anyone) -> Response:
        if who.role == "refurbisher":
            return RedirectResponse("/ui/evaluations/new", status_code=303)
        return page(request, "home.html", who)

    # -- the evaluation form -----------------------------------------------------------------
    def form_page(request: Request, who: Principal, values: dict[str, Any],
                  error: str | None = None) -> HTMLResponse:
        return page(request, "form.html", who, 422 if error else 200, values=values,
                    error=error, grades=list(wf.policy.grades), checks=CHECK_LABELS,
                    conditions=CONDITIONS)

    @r.get("/evaluations/new")
    async def new_evaluation(request: Request, who: Principal = submitter) -> HTMLResponse:
        return form_page(request, who, {"checks": list(CHECK_LABELS), "unlocked": True})

    @r.post("/evaluations")
    async def create(request: Request, who: Principal = submitter) -> Response:
        form = await request.form()
        values: dict[str, Any] = {k: str(form.get(k) or "").strip() for k in (
            "brand", "model", "storage_gb", "battery_health_pct", "screen_condition",
            "shell_condition", "refurbisher_grade", "refurbisher_id", "device_ref")}
        values["unlocked"] = form.get("unlocked") is not None
        values["checks"] = [c for c in CHECK_LABELS if form.get(f"check_{c}") is not None]
        try:
            photos = [await _photo(form.get(name), label, limit)
                      for name, label in (("front", "Front photo"), ("back", "Back photo"))]
            device = {"brand": values["brand"], "model": values["model"],
                      "storage_gb": _int(values["storage_gb"], "Storage capacity (GB)"),
                      "unlocked": values["unlocked"],
                      "battery_health_pct": _int(values["battery_health_pct"],
                                                 "Battery health (%)", optional=True),
                      "checks": {c: c in values["checks"] for c in CHECK_LABELS}}
            if not values["refurbisher_grade"]:
                raise Problem(422, "invalid-request", "Overall grade: choose a grade")
            body, _, maps = await submit_evaluation(
                wf, who, front=photos[0], back=photos[1], device=device,
                refurbisher_grade=values["refurbisher_grade"],
                refurbisher_id=values["refurbisher_id"] or None,
                device_ref=values["device_ref"] or None,
                screen_condition=values["screen_condition"] or None,
                shell_condition=values["shell_condition"] or None, heatmaps=True)
        except Problem as p:
            if p.status in (401, 429):
                raise
            return form_page(request, who, values, _readable(p.detail))
        cache.put_b64(body["id"], maps)
        return RedirectResponse(f"/ui/evaluations/{body['id']}", status_code=303)

    # -- evaluations --------------------------------------------------------------------------
    def list_page(request: Request, who: Principal, title: str, **filters: Any) -> HTMLResponse:
        found = evals.list_evaluations(wf.db, who, limit=50, **filters)
        return page(request, "list.html", who, title=title, items=found["items"],
                    total=found["total"])

    @r.get("/evaluations")
    def evaluation_list(request: Request, who: Principal = reader) -> HTMLResponse:
        return list_page(request, who, "Recent evaluations")

    @r.get("/reviews")
    def reviews(request: Request, who: Principal = staff) -> HTMLResponse:
        return list_page(request, who, "Review queue: justified grades", status="in_review")

    def evaluation_page(request: Request, who: Principal, evaluation_id: str,
                        error: str | None = None, text: str = "") -> HTMLResponse:
        ev = evals.load(wf.db, who, evaluation_id)
        return page(request, "evaluation.html", who, 422 if error else 200, ev=ev,
                    label=LABELS[ev["decision"]], error=error, text=text,
                    grades=list(wf.policy.grades), checks=CHECK_LABELS,
                    min_chars=wf.settings.justification_min_chars)

    @r.get("/evaluations/{evaluation_id}")
    def evaluation(request: Request, evaluation_id: str,
                   who: Principal = reader) -> HTMLResponse:
        return evaluation_page(request, who, evaluation_id)

    def back_to(evaluation_id: str) -> RedirectResponse:
        return RedirectResponse(f"/ui/evaluations/{evaluation_id}", status_code=303)

    @r.post("/evaluations/{evaluation_id}/accept-suggestion")
    def accept(evaluation_id: str, who: Principal = refurbisher) -> Response:
        evals.act(wf.db, who, evaluation_id, "accept-suggestion")
        return back_to(evaluation_id)

    @r.post("/evaluations/{evaluation_id}/keep-grade")
    def keep(evaluation_id: str, who: Principal = refurbisher) -> Response:
        evals.act(wf.db, who, evaluation_id, "keep-grade")
        return back_to(evaluation_id)

    @r.post("/evaluations/{evaluation_id}/approve")
    async def approve(request: Request, evaluation_id: str,
                      who: Principal = reviewer) -> Response:
        comment = str((await request.form()).get("comment") or "").strip() or None
        await run_in_threadpool(evals.act, wf.db, who, evaluation_id, "approve",
                                comment=comment)
        return back_to(evaluation_id)

    @r.post("/evaluations/{evaluation_id}/override")
    async def override(request: Request, evaluation_id: str,
                       who: Principal = reviewer) -> Response:
        form = await request.form()
        grade = str(form.get("grade") or "")
        if grade not in wf.policy.grades:
            raise Problem(422, "unknown-grade", f"grade: unknown grade {grade!r}")
        await run_in_threadpool(evals.act, wf.db, who, evaluation_id, "override", grade=grade,
                                comment=str(form.get("comment") or "").strip() or None)
        return back_to(evaluation_id)

    @r.post("/evaluations/{evaluation_id}/justification")
    async def justify(request: Request, evaluation_id: str,
                      who: Principal = refurbisher) -> Response:
        form = await request.form()
        text = str(form.get("text") or "").strip()
        uploads = [f for f in form.getlist("photos") if isinstance(f, UploadFile) and f.filename]
        s = wf.settings
        try:
            await run_in_threadpool(evals.check_transition, wf.db, who, evaluation_id,
                                    "justification")
            if len(text) < s.justification_min_chars:
                raise Problem(422, "invalid-request", f"Explanation: at least "
                              f"{s.justification_min_chars} characters")
            if not uploads:
                raise Problem(422, "invalid-request", "Additional photos: add at least one "
                              "photo")
            if len(uploads) > s.justification_max_photos:
                raise Problem(422, "invalid-request", "Additional photos: at most "
                              f"{s.justification_max_photos} photos")
            data = []
            for i, upload in enumerate(uploads, 1):
                b = await _photo(upload, f"Additional photo {i}", limit)
                await wf.svc.decode(f"Additional photo {i}", b)
                data.append(b)
        except Problem as p:
            if p.status in (401, 404, 409, 429):
                raise
            return await run_in_threadpool(evaluation_page, request, who, evaluation_id,
                                           _readable(p.detail), text)
        await run_in_threadpool(evals.justify, wf.db, wf.photos, who, evaluation_id, text,
                                data)
        return back_to(evaluation_id)

    @r.get("/evaluations/{evaluation_id}/photos/{name}")
    def photo(evaluation_id: str, name: str, who: Principal = reader) -> FileResponse:
        with wf.db.read() as s:
            ev = evals.get_visible(s, who, evaluation_id)
            digest = evals.photo_digest(ev, name)
            row = s.get(Photo, digest) if digest else None
        if row is None or not wf.photos.exists(row.sha256):
            raise Problem(404, "not-found", f"no photo {name!r} for this evaluation")
        return FileResponse(wf.photos.path(row.sha256), media_type=row.media_type,
                            headers={"Cache-Control": "private, max-age=86400"})

    @r.get("/evaluations/{evaluation_id}/heatmaps/{part}.png")
    async def heatmap(evaluation_id: str, part: str, who: Principal = reader) -> Response:
        if part not in CONDITIONS:
            raise Problem(404, "not-found", f"no part {part!r} (screen, shell)")

        def digest() -> str:
            with wf.db.read() as s:
                ev = evals.get_visible(s, who, evaluation_id)
                return ev.front_sha256 if part == "screen" else ev.back_sha256

        sha = await run_in_threadpool(digest)
        png = cache.get((evaluation_id, part))
        if png is None:
            assert wf.svc.grader is not None
            data = await asyncio.to_thread(wf.photos.path(sha).read_bytes)
            png = await asyncio.to_thread(heatmap_png, wf.svc.grader, data, part)
            cache.put((evaluation_id, part), png)
        return Response(png, media_type="image/png",
                        headers={"Cache-Control": "private, max-age=86400"})

    # -- dashboards ----------------------------------------------------------------------------
    @r.get("/dashboard")
    def refurbisher_dashboard(request: Request, days: int = 30, refurbisher: str | None = None,
                              who: Principal = reader) -> HTMLResponse:
        days = max(1, min(366, days))
        rid = who.refurbisher_id if who.role == "refurbisher" else refurbisher
        with wf.db.read() as s:
            known = list(s.scalars(select(Refurbisher.id).order_by(Refurbisher.id)))
        if rid is None or rid not in known:
            if who.role == "refurbisher":
                raise Problem(404, "not-found", "no dashboard for this refurbisher yet")
            return page(request, "choose.html", who, refurbishers=known, days=days)
        d = dashboard.refurbisher_dashboard(wf.db, rid, days)
        weekly = d["returns"]["weekly"]
        charts = {
            "returns": line_chart([w["week"] for w in weekly], {
                "your return rate": [w["return_rate"] for w in weekly],
                "market": [w["market_return_rate"] for w in weekly]},
                "Return rate per week of listing"),
            "reasons": bar_chart([(_pretty(x["reason"]), x["returns"] + x["claims"])
                                  for x in d["return_reasons"]], "Return and claim reasons"),
        }
        return page(request, "dashboard.html", who, d=d, charts=charts, days=days)

    @r.get("/platform")
    def platform(request: Request, days: int = 30, who: Principal = staff) -> HTMLResponse:
        days = max(1, min(366, days))
        d = dashboard.platform_dashboard(wf.db, wf.policy, days)
        grades = list(wf.policy.grades)
        weekly = d["predicted_grades_weekly"]
        charts = {
            "gaps": bar_chart([(f"gap {g}", n) for g, n in d["gap_distribution"].items()],
                              "Distribution of gaps (steps between grades)"),
            "grades": stacked_bars([w["week"] for w in weekly],
                                   [w["grades"] for w in weekly], grades,
                                   "Predicted grades per week"),
            "claims": stacked_bars([w["week"] for w in d["claims_weekly"]],
                                   d["claims_weekly"], ["returns", "claims"],
                                   "Returns and claims per week", list(PAIR)),
        }
        return page(request, "platform.html", who, d=d, charts=charts, days=days)

    return r


async def _photo(upload: Any, label: str, limit: int) -> bytes:
    """An uploaded photo's bytes; a readable error when missing, empty or too large."""
    if not isinstance(upload, UploadFile) or not upload.filename:
        raise Problem(422, "invalid-request", f"{label}: choose a photo")
    data = await upload.read(limit + 1)
    if len(data) > limit:
        raise Problem(413, "photo-too-large", f"{label}: larger than the limit of "
                      f"{limit // (1024 * 1024)} MB")
    if not data:
        raise Problem(422, "invalid-request", f"{label}: the file is empty")
    return data


def _int(text: str, label: str, optional: bool = False) -> int | None:
    if not text and optional:
        return None
    try:
        return int(text)
    except ValueError:
        raise Problem(422, "invalid-request", f"{label}: enter a whole number") from None


FIELDS = {"front:": "Front photo:", "back:": "Back photo:", "device: invalid device info: ": "",
          "refurbisher_grade:": "Overall grade:", "refurbisher_id:": "Refurbisher:",
          "screen_condition:": "Screen condition:", "shell_condition:": "Shell condition:"}


def _readable(detail: str) -> str:
    """API field names -> the form's labels."""
    for api, label in FIELDS.items():
        if detail.startswith(api):
            return (label + detail[len(api):]).strip()
    return detail
