"""Signing in with an API key (kept in an HttpOnly cookie), signing out, and the home page."""

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from serve.auth import authenticate
from serve.deps import WorkflowDep
from serve.problems import Unauthorized
from serve.ui.pages import COOKIE, AnyKey, page

router = APIRouter(prefix="/ui")


@router.get("/login")
async def login_page(request: Request) -> HTMLResponse:
    return page(request, "login.html", None)


@router.post("/login")
async def login(request: Request, wf: WorkflowDep) -> Response:
    form = await request.form()
    key = str(form.get("key") or "").strip()
    try:
        await run_in_threadpool(authenticate, wf.db, key)  # no rate limit: not a request yet
    except Unauthorized as e:
        return page(request, "login.html", None, 401, error=e.detail)
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
