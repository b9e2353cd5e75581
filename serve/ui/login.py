"""Signing in with an API key (kept in an HttpOnly cookie), signing out, and the home page."""

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from serve.deps import WorkflowDep, client_address
from serve.gate import KeyFirstRoute
from serve.problems import TooManyAuthFailures, Unauthorized
from serve.ui.pages import COOKIE, AnyKey, page

router = APIRouter(prefix="/ui", route_class=KeyFirstRoute)


@router.get("/login")
async def login_page(request: Request) -> HTMLResponse:
    return page(request, "login.html", None)


@router.post("/login")
async def login(request: Request, wf: WorkflowDep) -> Response:
    form = await request.form()
    key = str(form.get("key") or "").strip()
    try:  # failed logins are limited per client address; no per-key limit: not a request yet
        await wf.authenticate(key, client_address(request))
    except (Unauthorized, TooManyAuthFailures) as e:
        refused = page(request, "login.html", None, e.status, error=e.detail)
        refused.headers.update(e.headers)
        return refused
    response = RedirectResponse("/ui", status_code=303)
    response.set_cookie(COOKIE, key, httponly=True, samesite="strict", path="/",
                        secure=request.url.scheme == "https")
    return response


@router.post("/logout")
async def logout() -> Response:
    response = RedirectResponse("/ui/login", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response


@router.get("")
async def home(request: Request, who: AnyKey) -> Response:
    if who.role == "refurbisher":
        return RedirectResponse("/ui/evaluations/new", status_code=303)
    return page(request, "home.html", who)
