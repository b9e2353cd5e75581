"""The key first, then the body, within its route's size limit.

FastAPI parses a route's form or JSON body before it resolves the route's dependencies, so the
key check cannot wait for them. :class:`KeyFirstRoute` (the route class of every router) runs
before the parsing: a route that needs an API key (a :class:`~serve.deps.KeyCheck` among its
dependencies) has the key checked from the headers (401, 403, 429 at once), then a body whose
``Content-Length`` passes the route's limit (:func:`body_limits`) is refused (413), all before
a byte of the body is read. :class:`Gate`, a plain ASGI middleware, counts the body as it
arrives against the route's limit (a chunked body announces no size) and closes the connection
after an answer sent before the body was read, rather than drain it.

Plain ASGI on purpose: the body stream passes through untouched (``BaseHTTPMiddleware`` wraps
every chunk in a task group). The UI's routes read their forms themselves, after their login
check; their limits apply alike.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.dependencies.utils import get_flat_params
from fastapi.routing import APIRoute
from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serve.auth import key_from_headers
from serve.deps import MAX_DEVICE_BYTES, KeyCheck, client_address
from serve.openapi import derived_statuses, problems
from serve.problems import RequestTooLarge
from serve.settings import Settings
from serve.workflow import Workflow

BATCH = "/v1/grade/batch"
#: A batch device besides its photos: its id, checklist, grade and the JSON around them.
BATCH_DEVICE_BYTES = 16 * 1024
#: A photo form besides its photos: the checklist (a part of up to MAX_DEVICE_BYTES), a
#: justification's text, the other fields and the multipart framing.
FORM_BYTES = MAX_DEVICE_BYTES + 64 * 1024


#: Where a route leaves its body limit in the request's scope, for :class:`Gate`.
LIMIT = "photograde.body_limit"


class BodyTooLarge(HTTPException):
    """A request body grew past its route's limit as it arrived (no Content-Length).

    An HTTPException because FastAPI re-raises those from body parsing (anything else
    becomes a generic 400 there), so the app's handler answers it as a 413 problem.
    """

    def __init__(self, limit: int):
        super().__init__(413, f"request body exceeds this route's limit of {limit} bytes")


def body_limits(settings: Settings) -> Callable[[str | None], int]:
    """The body limit (bytes) of a route, by its path template: ``max_body_kb`` for a route
    without photos (JSON, a form); ``max_upload_mb`` per photo it takes (two for a grading or
    an evaluation, ``justification_max_photos`` for a justification) and FORM_BYTES for a
    form with photos; for the batch route, ``max_batch_devices`` devices of two base64 photos
    each, at most ``max_batch_mb``."""
    photo, rest = settings.max_upload_bytes, settings.max_body_kb * 1024
    photos = {"/v1/grade": 2, "/v1/evaluations": 2, "/ui/evaluations": 2}
    for prefix in ("/v1", "/ui"):
        photos[f"{prefix}/evaluations/{{evaluation_id}}/justification"] = \
            settings.justification_max_photos
    base64_photo = 4 * -(-photo // 3)
    batch = min(settings.max_batch_devices * (2 * base64_photo + BATCH_DEVICE_BYTES) + rest,
                int(settings.max_batch_mb * 1024 * 1024))

    def limit_for(route_path: str | None) -> int:
        if route_path == BATCH:
            return batch
        n = photos.get(route_path or "", 0)
        return n * photo + FORM_BYTES if n else rest

    return limit_for


def key_check(dependant: Any) -> KeyCheck | None:
    """The KeyCheck among a route's dependencies (at any depth), if it needs a key."""
    stack = [dependant]
    while stack:
        dependant = stack.pop()
        if isinstance(dependant.call, KeyCheck):
            return dependant.call
        stack.extend(dependant.dependencies)
    return None


class KeyFirstRoute(APIRoute):
    """A route that checks the key (if it needs one) and the announced body size before
    FastAPI reads and parses the body, and leaves its limit for :class:`Gate`. Its OpenAPI
    lists the problems its key, body and parameters may answer (serve/openapi.py)."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kw: Any):
        super().__init__(path, endpoint, **kw)
        derived = derived_statuses(
            keyed=key_check(self.dependant) is not None,
            body=self.body_field is not None or "requestBody" in (self.openapi_extra or {}),
            params=bool(get_flat_params(self.dependant)))
        self.responses = {**problems(*derived), **self.responses}

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler, check = super().get_route_handler(), key_check(self.dependant)

        async def key_first(request: Request) -> Response:
            wf: Workflow = request.app.state.workflow
            if check is not None and wf.settings.auth_required:
                key = key_from_headers(request.headers.get("authorization"),
                                       request.headers.get("x-api-key"))
                who = await wf.identify(key, client_address(request))
                request.state.principal = check.verify(who)
            limit = request.app.state.body_limit(self.path)
            length = request.headers.get("content-length", "")
            if length.isdigit() and int(length) > limit:
                raise RequestTooLarge(f"request body of {length} bytes exceeds this route's "
                                      f"limit of {limit} bytes")
            request.scope[LIMIT] = limit
            return await handler(request)

        return key_first


class Gate:
    """Count each request body as it arrives against its route's limit (``scope[LIMIT]``,
    else ``default``: BodyTooLarge once past it), and close the connection after a response
    that started before the body was read to its end."""

    def __init__(self, app: ASGIApp, *, default: int):
        self.app, self.default = app, default

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        pending = headers.get("content-length", "0") != "0" or "transfer-encoding" in headers
        seen = 0

        async def receive_counted() -> Message:
            nonlocal seen, pending
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                pending = message.get("more_body", False)
                if seen > (limit := scope.get(LIMIT, self.default)):
                    raise BodyTooLarge(limit)
            return message

        async def send_closing(message: Message) -> None:
            if message["type"] == "http.response.start" and pending:
                MutableHeaders(scope=message)["connection"] = "close"  # not drained: closed
            await send(message)

        await self.app(scope, receive_counted, send_closing)
