"""An ASGI app that reads a request's whole body and answers ``ok``: on the same uvicorn as
the service (httptools, uvloop), what an upload costs before any application code runs
(``python -m benchmarks.floor``'s upload floor). ``GET /readyz`` answers at once."""

from __future__ import annotations

from typing import Any


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})
