"""The security headers of every response, set in one plain ASGI middleware (serve/app.py adds
it outside the others, so that early refusals such as a 413 carry them too):

    Content-Security-Policy    :data:`CSP`: scripts, styles, fonts and fetches from this origin
                               only (no inline script, no inline style, no eval); images from
                               this origin, ``data:`` and ``blob:`` (the form's previews of the
                               chosen photos); no plugins, no <base>, forms post here only, no
                               framing. The same on ``/docs``: Swagger UI needs no more (its
                               start-up is a file too, serve/routes/docs.py; it sets styles
                               through the DOM, which the policy allows); ``/redoc``:
                               :data:`REDOC_CSP`
    X-Content-Type-Options     nosniff
    X-Frame-Options            DENY (old browsers; frame-ancestors for the others)
    Referrer-Policy            no-referrer; the UI's pages: same-origin (no Referer to other
                               sites either, but their forms keep their Origin: under
                               no-referrer a browser posts a form with ``Origin: null``, and
                               over plain http without Sec-Fetch-Site, the origin check of
                               serve/ui/pages.py could then not tell the UI's own forms from
                               another site's)
    Cache-Control              no-store (pages, API answers, photos: nothing authenticated
                               outlives a logout in a cache), unless the route set its own;
                               the static assets (/ui/static, /docs/assets) keep theirs
    Strict-Transport-Security  ``max-age=<hsts_max_age>``, only with ``hsts_max_age`` > 0

A route may set any of these itself (the middleware only adds what is missing).
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CSP = "; ".join((
    "default-src 'self'", "script-src 'self'", "style-src 'self'", "img-src 'self' data: blob:",
    "object-src 'none'", "base-uri 'none'", "form-action 'self'", "frame-ancestors 'none'"))
#: ``/redoc`` only: ReDoc (styled-components) writes <style> elements and runs its search in a
#: worker made from a blob, so its page allows inline styles and blob: workers; still no inline
#: script, and the page holds no user data (the public OpenAPI description).
REDOC_CSP = CSP.replace("style-src 'self'", "style-src 'self' 'unsafe-inline'") + \
    "; worker-src blob:"
COMMON = {"x-content-type-options": "nosniff", "x-frame-options": "DENY"}
STATIC = ("/ui/static/", "/docs/assets/")
#: A stored photo or a heatmap: kept by no cache, the browser's included (a photo must not
#: outlive a logout on a shared computer).
PHOTO_CACHE = "private, no-store"


def headers_for(path: str, hsts_max_age: int = 0) -> dict[str, str]:
    """The headers a response to ``path`` gets (unless it set them itself)."""
    static = path.startswith(STATIC)
    ui = (path == "/ui" or path.startswith("/ui/")) and not static
    csp = REDOC_CSP if path == "/redoc" else CSP
    out = {**COMMON, "content-security-policy": csp,
           "referrer-policy": "same-origin" if ui else "no-referrer"}
    if not static:
        out["cache-control"] = "no-store"
    if hsts_max_age > 0:
        out["strict-transport-security"] = f"max-age={hsts_max_age}"
    return out


class SecurityHeaders:
    """Add :func:`headers_for` to every HTTP response."""

    def __init__(self, app: ASGIApp, *, hsts_max_age: int = 0):
        self.app, self.hsts_max_age = app, hsts_max_age

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = headers_for(scope["path"], self.hsts_max_age)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                out = MutableHeaders(scope=message)
                for name, value in headers.items():
                    out.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)
