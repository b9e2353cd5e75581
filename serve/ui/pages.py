"""What the UI's routers share: templates, the signed-in key (its session's cookie), the
origin check, the page helper and the form's labels for the API's field names.

The session (serve/sessions.py) and its key are checked on every request with the API's rules
(serve/auth.py): the same roles, the same tenant isolation (another refurbisher's evaluation is
a 404), the same rate limit.
"""

import re
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from fusion.bundle import BundleManifest
from serve.auth import OPEN, Principal
from serve.deps import WorkflowDep
from serve.fields import DEVICE_REF_MAX, TEXT_MAX
from serve.models import ROLES
from serve.problems import CrossOrigin, FieldError, Forbidden, Problem, Unauthorized
from serve.sessions import cookie_name
from serve.ui.charts import bar
from serve.ui.heatmaps import HeatmapCache
from serve.workflow import Workflow
from tabular.schema import ChecklistError

SERVE = Path(__file__).resolve().parent.parent  # serve/: templates/ and static/
LABELS = {"validated": "Grade validated", "suggestion": "Different grade suggested",
          "justification_required": "Justification required",
          "inconclusive": "Inconclusive: sent for review"}
#: The API's field names, as the form labels them.
FORM_LABELS = {"front": "Front photo", "back": "Back photo", "refurbisher_grade": "Overall grade",
               "refurbisher_id": "Refurbisher", "screen_condition": "Screen condition",
               "shell_condition": "Shell condition", "text": "Explanation",
               "photos": "Additional photos", "device_ref": "Your reference",
               "comment": "Comment"}
_PHOTO_N = re.compile(r"photos\[(\d+)\]")


def pretty(value: str | None) -> str:
    return (value or "-").replace("_", " ")


templates = Jinja2Templates(directory=SERVE / "templates")
templates.env.filters["pretty"] = pretty
templates.env.filters["pct"] = lambda v: "-" if v is None else f"{100 * v:.0f}%"
templates.env.globals["bar"] = bar
templates.env.globals["limits"] = {"text": TEXT_MAX, "device_ref": DEVICE_REF_MAX}


class LoginRequired(Exception):
    """No live session in the cookie: go to the login page."""


def base(wf: Workflow, who: Principal | None) -> dict[str, Any]:
    """What every page shows: the key, the demo banner, the bundle version; and the grades
    that are not sellable (a device at such a grade is never described as listed)."""
    g = wf.svc.grader
    return {"who": who, "demo": bool(g and g.manifest.demo),
            "bundle_version": g.manifest.bundle_version if g else None,
            "model_label": model_label(g.manifest) if g else None,
            "not_sellable": g.policy.not_sellable if g else frozenset()}


def model_label(manifest: BundleManifest) -> str:
    """Which model is serving, in words: the shipped base model, a demo build or a custom one."""
    if manifest.kind == "base":
        return f"{manifest.model_name} (the shipped base model)"
    if manifest.kind == "demo":
        return "demo build (synthetic photos only)"
    return f"custom bundle{f' {manifest.model_name}' if manifest.model_name else ''}"


def page(request: Request, name: str, who: Principal | None, code: int = 200,
         **context: Any) -> HTMLResponse:
    """Template ``name`` with ``context``, answered with status ``code``."""
    return templates.TemplateResponse(
        request, name, {**base(request.app.state.workflow, who), **context}, status_code=code)


def get_heatmaps(request: Request) -> HeatmapCache:
    return request.app.state.heatmaps


Heatmaps = Annotated[HeatmapCache, Depends(get_heatmaps)]


async def same_origin(request: Request) -> None:
    """Refuse a state-changing UI request sent by another origin's page (cross-site request
    forgery). The session cookie is SameSite=Strict, but a sibling subdomain is the "same site"
    and old browsers ignore SameSite. The browser says where the form was: ``Sec-Fetch-Site``
    (every current browser, over https or to loopback) must be ``same-origin``; without it,
    ``Origin`` must match the Host (or a proxy's X-Forwarded-Host) header, and ``Origin: null``
    (what a form sends under ``Referrer-Policy: no-referrer``, or a sandboxed page) is refused.
    Forms cannot set these headers; clients that send neither (curl, scripts) still need a
    live session."""
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return
    fetch_site = request.headers.get("sec-fetch-site")
    origin = request.headers.get("origin")
    if fetch_site is not None:
        ok = fetch_site in ("same-origin", "none")
    else:
        hosts = {request.headers.get("host"), request.headers.get("x-forwarded-host")} - {None}
        ok = origin is None or (origin != "null" and urlsplit(origin).netloc in hosts)
    if not ok:
        raise CrossOrigin(f"this form was sent from another site ({origin or fetch_site}); "
                          "open photograde's own page and send it from there")


def require(*roles: str):
    """A dependency: the signed-in key's principal, with one of ``roles`` (LoginRequired
    without a live session; Forbidden, RateLimited as in the API)."""
    async def principal(request: Request, wf: WorkflowDep) -> Principal:
        if not wf.settings.auth_required:
            return OPEN
        session_id = request.cookies.get(cookie_name(wf.settings))
        if not session_id:
            raise LoginRequired()
        try:
            who = await wf.identify_session(session_id)
        except Unauthorized:
            raise LoginRequired() from None
        if not who.has(*roles):
            raise Forbidden(f"this page needs a {' or '.join(roles)} key; you are signed in "
                            f"with a {who.role} key")
        return who
    return Depends(principal)


Submitter = Annotated[Principal, require("refurbisher", "platform")]
Reader = Annotated[Principal, require("refurbisher", "platform", "reviewer")]
RefurbisherKey = Annotated[Principal, require("refurbisher")]
Reviewer = Annotated[Principal, require("reviewer")]
Staff = Annotated[Principal, require("platform", "reviewer")]
AnyKey = Annotated[Principal, require(*ROLES)]


def form_label(field: str | None) -> str | None:
    """The form's label of an API field (``photos[0]``: "Additional photo 1")."""
    if field is None:
        return None
    m = _PHOTO_N.fullmatch(field)
    return f"Additional photo {int(m.group(1)) + 1}" if m else FORM_LABELS.get(field)


def readable(p: Problem) -> str:
    """A problem's detail for the form: the field it names by its label; the checklist's
    errors as they are (each names its own field)."""
    if isinstance(p, FieldError) and isinstance(p.error, ChecklistError):
        return "; ".join(p.error.errors)
    label = form_label(p.field)
    if label and p.field and p.detail.startswith(f"{p.field}:"):
        return label + p.detail[len(p.field):]
    return p.detail
