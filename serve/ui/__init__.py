"""The web UI under ``/ui``: server-rendered HTML (Jinja2), a small CSS file, SVG charts.

    GET  /ui/login, POST /ui/login, POST /ui/logout   paste an API key: a session opens
    GET  /ui                                          home (by role)
    GET  /ui/evaluations/new, POST /ui/evaluations    the evaluation form     refurbisher, platform
    GET  /ui/evaluations                              recent evaluations      refurbisher, staff
    GET  /ui/evaluations/{id}                         the outcome and why     refurbisher, staff
    POST /ui/evaluations/{id}/accept-suggestion|keep-grade|justification     refurbisher
    POST /ui/evaluations/{id}/approve|override                               reviewer
    GET  /ui/evaluations/{id}/photos/{name}, /ui/evaluations/{id}/heatmaps/{part}.png
    GET  /ui/dashboard[?days&refurbisher]             refurbisher dashboard   refurbisher, staff
    GET  /ui/platform[?days]                          platform KPIs           platform, reviewer
    GET  /ui/model-health[?days&bucket]               the model's health      platform, reviewer
    GET  /ui/reviews                                  the review queue        reviewer, platform

Routers by area: ``login``, ``form``, ``evaluations``, ``review``, ``dashboards``; what they
share in ``pages``. The session (serve/sessions.py) and its key are checked on every request
with the API's rules (serve/auth.py); a POST sent from another origin's page is refused
(``same_origin``). Evaluations and actions go through the same service functions as the JSON
API (serve/workflow.py), with the same limits, and a domain error is answered with the status
of the same mapping (serve/problems.py), as an error page or beside the form's field.
Pages are in English or French (``i18n``: Babel catalogs, Jinja2's i18n extension).
"""

from fastapi import Depends, FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from serve import handlers
from serve.problems import DOMAIN_ERRORS, problem_of
from serve.ui import dashboards, evaluations, form, login, review
from serve.ui.heatmaps import HeatmapCache
from serve.ui.i18n import use_locale
from serve.ui.pages import SERVE, LoginRequired, page, same_origin

#: In this order: /ui/evaluations/new before /ui/evaluations/{evaluation_id}.
ROUTERS = (login.router, form.router, evaluations.router, review.router, dashboards.router)


async def root() -> RedirectResponse:
    return RedirectResponse("/ui", status_code=307)


async def on_domain_error(request: Request, exc: Exception) -> Response:
    """Under /ui: an error page with the problem's status (401: the login page); elsewhere
    the API's problem+json."""
    if not request.url.path.startswith("/ui"):
        return await handlers.on_domain_error(request, exc)
    p = problem_of(exc)
    if p.status == 401:
        return RedirectResponse("/ui/login", status_code=303)
    return page(request, "error.html", None, p.status, status=p.status, message=p.detail)


async def on_login(request: Request, exc: LoginRequired) -> Response:
    return RedirectResponse("/ui/login", status_code=303)


def mount_ui(app: FastAPI) -> None:
    """Add the UI's routes, static files, ``/`` -> ``/ui`` and its error pages to ``app``."""
    app.state.heatmaps = HeatmapCache()
    app.mount("/ui/static", StaticFiles(directory=SERVE / "static"), name="ui-static")
    for router in ROUTERS:
        app.include_router(router, include_in_schema=False,
                           dependencies=[Depends(same_origin), Depends(use_locale)])
    app.add_api_route("/", root, include_in_schema=False)
    for cls in DOMAIN_ERRORS:
        app.add_exception_handler(cls, on_domain_error)
    # Starlette types a handler as taking any Exception (it passes only the registered class).
    app.add_exception_handler(LoginRequired, on_login)  # type: ignore[arg-type]
