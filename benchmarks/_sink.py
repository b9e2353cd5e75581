"""An ASGI app that reads a request's whole body and answers ``ok``: on the same uvicorn as
the service (httptools, uvloop), what an upload costs before any application code runs
(``python -m benchmarks.floor``'s upload floor). ``GET /readyz`` answers at once.
:class:`SocketSink` does the same on a plain socket, without an ASGI server."""

from __future__ import annotations

import socket
import threading
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


class SocketSink:
    """The same job without an ASGI server: a plain blocking socket in a thread that reads
    each request's headers and ``Content-Length`` bytes and answers ``ok`` (keep-alive), to
    show what receiving the body costs the kernel and Python alone. A context manager; its
    ``url`` once entered."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.server.getsockname()[1]}"
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:  # closed
                return
            with conn, conn.makefile("rb") as f:
                while self._answer(conn, f):
                    pass

    @staticmethod
    def _answer(conn: socket.socket, f: Any) -> bool:
        length = 0
        while (line := f.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if not line:
            return False
        f.read(length)
        conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\n\r\nok")
        return True

    def __enter__(self) -> SocketSink:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.close()
