"""Signing in with an API key (which opens a session: only the session's random id goes in the
HttpOnly cookie, never the key), signing out (which ends the session), and the home page
(for staff: what waits for a decision and the latest evaluations)."""

from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from serve import evaluations as evals
from serve.auth import Principal
from serve.deps import WorkflowDep, client_address
from serve.gate import KeyFirstRoute
from serve.problems import TooManyAuthFailures, Unauthorized
from serve.sessions import LEGACY_COOKIE, Lifetime, close_session, cookie_name, open_session
from serve.settings import Settings
from serve.ui.pages import AnyKey, page
from serve.workflow import Workflow

router = APIRouter(prefix="/ui", route_class=KeyFirstRoute)
LOOPBACK = ("localhost", "127.0.0.1", "::1", "[::1]")


def cookie_hint(request: Request, settings: Settings) -> bool:
    """Whether the page should say why signing in may not hold: the session cookie is Secure
    and this page came over plain http from a host other than loopback (browsers keep a Secure
    cookie from http only for localhost, if at all)."""
    return (settings.session_cookie_secure and request.url.scheme != "https"
            and request.url.hostname not in LOOPBACK)


def login_page(request: Request, settings: Settings, code: int = 200,
               error: str | None = None) -> HTMLResponse:
    return page(request, "login.html", None, code, error=error,
                cookie_hint=cookie_hint(request, settings))


@router.get("/login")
async def login_form(request: Request, wf: WorkflowDep) -> HTMLResponse:
    return login_page(request, wf.settings)


@router.post("/login")
async def login(request: Request, wf: WorkflowDep) -> Response:
    form = await request.form()
    key = str(form.get("key") or "").strip()
    try:  # failed logins are limited per client address; no per-key limit: not a request yet
        who = await wf.authenticate(key, client_address(request))
    except (Unauthorized, TooManyAuthFailures) as e:
        refused = login_page(request, wf.settings, e.status, e.detail)
        refused.headers.update(e.headers)
        return refused
    settings = wf.settings
    life = Lifetime.of(settings)
    earlier = request.cookies.get(cookie_name(settings))
    if earlier:  # signing in again: the earlier session ends
        await run_in_threadpool(close_session, wf.db, earlier)
    session_id = await run_in_threadpool(open_session, wf.db, who.key_id or "", life)
    response = RedirectResponse("/ui", status_code=303)
    response.set_cookie(cookie_name(settings), session_id, httponly=True, samesite="strict",
                        path="/", secure=settings.session_cookie_secure,
                        max_age=int(life.absolute.total_seconds()))
    response.delete_cookie(LEGACY_COOKIE, path="/")  # an older version's key cookie
    return response


@router.post("/logout")
async def logout(request: Request, wf: WorkflowDep) -> Response:
    name = cookie_name(wf.settings)
    session_id = request.cookies.get(name)
    if session_id:
        await run_in_threadpool(close_session, wf.db, session_id)
    response = RedirectResponse("/ui/login", status_code=303)
    response.delete_cookie(name, path="/", secure=wf.settings.session_cookie_secure,
                           httponly=True, samesite="strict")
    return response


def overview(wf: Workflow, who: Principal) -> dict[str, Any]:
    """The home page's figures: open cases by status, the review queue's oldest, the latest
    evaluations (their decisions)."""
    if who.role not in (None, "platform", "reviewer"):
        return {}
    open_now = {st: evals.list_evaluations(wf.db, who, status=st, limit=1)["total"] or 0
                for st in ("in_review", "awaiting_justification", "awaiting_refurbisher")}
    queue = evals.list_evaluations(wf.db, who, status="in_review", limit=5)["items"]
    recent = evals.list_evaluations(wf.db, who, limit=5)["items"]
    return {"open_now": open_now, "queue": queue, "recent": recent}


@router.get("")
async def home(request: Request, who: AnyKey, wf: WorkflowDep) -> Response:
    if who.role == "refurbisher":
        return RedirectResponse("/ui/evaluations/new", status_code=303)
    return page(request, "home.html", who, **await run_in_threadpool(overview, wf, who))
