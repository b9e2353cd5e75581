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
from serve.ui import i18n
from serve.ui.charts import bar
from serve.ui.heatmaps import HeatmapCache
from serve.ui.i18n import N_, _
from serve.workflow import Workflow
from tabular.schema import ChecklistError

SERVE = Path(__file__).resolve().parent.parent  # serve/: templates/ and static/
#: A decision's heading (English; shown through gettext).
LABELS = {"validated": N_("Grade validated"), "suggestion": N_("Different grade suggested"),
          "justification_required": N_("Justification required"),
          "inconclusive": N_("Inconclusive: sent for review")}
#: The API's field names, as the form labels them (English; shown through gettext).
FORM_LABELS = {"front": N_("Front photo"), "back": N_("Back photo"),
               "refurbisher_grade": N_("Overall grade"), "refurbisher_id": N_("Refurbisher"),
               "screen_condition": N_("Screen condition"),
               "shell_condition": N_("Shell condition"), "text": N_("Explanation"),
               "photos": N_("Additional photos"), "device_ref": N_("Your reference"),
               "comment": N_("Comment")}
_PHOTO_N = re.compile(r"photos\[(\d+)\]")


def pretty(value: str | None) -> str:
    """An enum value (a grade, a condition, a status...) in words, in the page's language
    (serve/ui/words.py marks them all for the catalog)."""
    return _((value or "-").replace("_", " "))


templates = Jinja2Templates(directory=SERVE / "templates")
templates.env.add_extension("jinja2.ext.i18n")
templates.env.policies["ext.i18n.trimmed"] = True
templates.env.install_gettext_callables(  # type: ignore[attr-defined]
    i18n.gettext, i18n.ngettext, newstyle=True)
templates.env.filters["pretty"] = pretty
templates.env.filters["pct"] = i18n.percent
templates.env.filters["number"] = i18n.number
templates.env.filters["when"] = i18n.when
templates.env.filters["day"] = i18n.day
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
        return _("%(name)s (the shipped base model)") % {"name": manifest.model_name}
    if manifest.kind == "demo":
        return _("demo build (synthetic photos only)")
    if manifest.model_name:
        return _("custom bundle %(name)s") % {"name": manifest.model_name}
    return _("custom bundle")


def page(request: Request, name: str, who: Principal | None, code: int = 200,
         **context: Any) -> HTMLResponse:
    """Template ``name`` with ``context`` in the request's language, answered with status
    ``code`` (a language chosen with the switch is kept in a cookie)."""
    lang = i18n.activate(request)
    response = templates.TemplateResponse(
        request, name, {**base(request.app.state.workflow, who), "lang": lang,
                        "switch": i18n.switch_links(request), **context}, status_code=code)
    i18n.remember(request, response)
    return response


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
            raise Forbidden(_("this page needs a %(roles)s key; you are signed in with a "
                              "%(role)s key") % {"roles": _(" or ").join(roles),
                                                 "role": who.role})
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
    if m:
        return _("Additional photo %(n)d") % {"n": int(m.group(1)) + 1}
    return _(FORM_LABELS[field]) if field in FORM_LABELS else None


def readable(p: Problem) -> str:
    """A problem's detail for the form: the field it names by its label; the checklist's
    errors as they are (each names its own field)."""
    if isinstance(p, FieldError) and isinstance(p.error, ChecklistError):
        return "; ".join(p.error.errors)
    label = form_label(p.field)
    if label and p.field and p.detail.startswith(f"{p.field}:"):
        return label + p.detail[len(p.field):]
    return p.detail
