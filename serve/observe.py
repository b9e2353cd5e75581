"""Per-request plumbing as a plain ASGI middleware: request id and latency.

Plain ASGI on purpose: Starlette's ``@app.middleware("http")`` (BaseHTTPMiddleware) wraps
every chunk of the request body in a task group, which for two 12-MP uploads cost more than
parsing the multipart body itself.
"""

from __future__ import annotations

import re
import time
import uuid

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serve.metrics import Metrics

REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


class Observe:
    """Give each request an id (``x-request-id``, echoed or new, also in ``request.state``)
    and record the latency per route and status. (The key and body-size checks follow, in
    serve/gate.py.)"""

    def __init__(self, app: ASGIApp, *, metrics: Metrics):
        self.app, self.metrics = app, metrics

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
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            route = scope.get("route")
            self.metrics.latency.labels(getattr(route, "path", "unmatched"),
                                        str(status)).observe(time.perf_counter() - start)
