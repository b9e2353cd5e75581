"""Per-request plumbing as a plain ASGI middleware: request id, body-size limit, latency.

Plain ASGI on purpose: Starlette's ``@app.middleware("http")`` (BaseHTTPMiddleware) wraps
every chunk of the request body in a task group, which for two 12-MP uploads cost more than
parsing the multipart body itself.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable

from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serve.metrics import Metrics
from serve.problems import RequestTooLarge


class BodyTooLarge(HTTPException):
    """A request body sent without Content-Length (chunked) grew past the route's limit.

    An HTTPException because FastAPI re-raises those from body parsing (anything else
    becomes a generic 400 there), so the app's handler answers it as a 413 problem.
    """

    def __init__(self, limit: int):
        super().__init__(413, f"request body exceeds the limit of {limit} bytes")


def capped(receive: Receive, limit: int) -> Receive:
    """``receive`` that raises BodyTooLarge once the body read so far passes ``limit``."""
    seen = 0

    async def receive_capped() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise BodyTooLarge(limit)
        return message

    return receive_capped


REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


class Observe:
    """Give each request an id (``x-request-id``, echoed or new, also in ``request.state``),
    refuse bodies whose Content-Length passes ``limit_for(path)`` with a 413 problem (a
    chunked body is counted as it arrives and refused once it passes), and record the
    latency per route and status."""

    def __init__(self, app: ASGIApp, *, limit_for: Callable[[str], int], metrics: Metrics):
        self.app, self.limit_for, self.metrics = app, limit_for, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        request_id = headers.get("x-request-id", "")
        if not REQUEST_ID.fullmatch(request_id):  # echo only a plain token, never markup
            request_id = uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        status = 500  # unless a response starts: an unhandled error

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                out = MutableHeaders(scope=message)
                out.append("x-request-id", request_id)
            await send(message)

        start = time.perf_counter()
        path = scope["path"]
        length, limit = headers.get("content-length"), self.limit_for(path)
        try:
            if length and length.isdigit() and int(length) > limit:
                problem = RequestTooLarge(f"request body of {length} bytes exceeds the limit "
                                          f"of {limit} bytes")
                self.metrics.errors.labels(problem.kind).inc()
                response = problem.response(path, request_id)
                await response(scope, receive, send_with_id)
            else:
                if length is None:  # chunked: no size announced, count it as it arrives
                    receive = capped(receive, limit)
                await self.app(scope, receive, send_with_id)
        finally:
            route = scope.get("route")
            self.metrics.latency.labels(getattr(route, "path", "unmatched"),
                                        str(status)).observe(time.perf_counter() - start)
