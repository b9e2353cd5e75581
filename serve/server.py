"""The HTTP server: uvicorn with limits on what a client may send before its request starts.

uvicorn's C parser (httptools) has no limit on the size of a request's headers and no timeout
before a request's headers are complete: a 64 MB header was read whole, and a connection that
sends a byte now and then was kept forever. :class:`GuardedHttpTools` adds both: more than
``max_header_kb`` of request line and headers is answered 431, headers not complete
``timeout_headers`` seconds after the connection (or the request's first byte) 408, and the
connection is closed. Idle keep-alive connections close after ``timeout_keep_alive`` seconds;
forwarded headers are left to the app (serve/forwarded.py, ``trusted_proxies``). Slow bodies
are a reverse proxy's to bound (docs/service.md, "Limits"), but no body is read before its key
is checked (serve/gate.py).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from serve.settings import Settings


class HeadTooLarge(Exception):
    """Raised from a parser callback: the request's line and headers passed the limit."""


class GuardedHttpTools(HttpToolsProtocol):
    """uvicorn's httptools protocol with a request-header size limit and a header timeout."""

    #: (max header bytes, header timeout in s); set by :meth:`configure`, else (in a worker
    #: process) from the environment, as the worker's app is.
    limits: ClassVar[tuple[int, float] | None] = None

    @classmethod
    def configure(cls, settings: Settings) -> None:
        cls.limits = (settings.max_header_kb * 1024, settings.timeout_headers)

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        if GuardedHttpTools.limits is None:
            GuardedHttpTools.configure(Settings())
        assert GuardedHttpTools.limits is not None
        self.max_head, self.head_timeout = GuardedHttpTools.limits
        self.reading_head, self.head_bytes, self.head_received = False, 0, 0
        self.head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.transport.is_closing():
            return
        super().data_received(data)  # a HeadTooLarge from a callback: send_400_response
        if self.reading_head and not self.transport.is_closing():
            self.head_received += len(data)  # a header still incomplete, buffered by httptools
            if self.head_received > self.max_head:
                self._refuse(431, self._too_large())

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.reading_head, self.head_bytes, self.head_received = True, 0, 0
        if self.head_timer is None:
            self._arm()

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)
        super().on_header(name, value)

    def _count(self, n: int) -> None:
        self.head_bytes += n
        if self.head_bytes > self.max_head:
            raise HeadTooLarge  # stops the parser: answered in send_400_response

    def send_400_response(self, msg: str) -> None:
        if self.head_bytes > self.max_head:
            self._refuse(431, self._too_large())
        else:
            super().send_400_response(msg)

    def _too_large(self) -> str:
        return f"request line and headers exceed the limit of {self.max_head} bytes"

    def on_headers_complete(self) -> None:
        self.reading_head = False
        self._disarm()
        super().on_headers_complete()

    def _arm(self) -> None:
        self.head_timer = self.loop.call_later(self.head_timeout, self._on_head_timeout)

    def _disarm(self) -> None:
        if self.head_timer is not None:
            self.head_timer.cancel()
            self.head_timer = None

    def _busy(self) -> bool:
        """A previous (pipelined) request's response is still being written."""
        return self.cycle is not None and not self.cycle.response_complete

    def _on_head_timeout(self) -> None:
        self.head_timer = None
        if self._busy():  # the server is slow, not the client: wait for it
            self._arm()
        elif not self.transport.is_closing():
            self._refuse(408, f"request headers not received within {self.head_timeout:g} s")

    def _refuse(self, status: int, message: str) -> None:
        """Answer ``status`` in plain text and close the connection (no request started);
        after the response in progress, if any."""
        self._disarm()
        if self._busy():
            self.cycle.keep_alive = False
            self.flow.pause_reading()
            return
        body = message.encode()
        self.transport.write(b"".join([
            STATUS_LINE[status], b"content-type: text/plain; charset=utf-8\r\n",
            b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body), body]))
        self.transport.close()


log = logging.getLogger("photograde.server")


def start_warnings(settings: Settings) -> list[str]:
    """What the operator should know before several processes start: each counts its own
    rate limits unless they share Redis."""
    if settings.workers > 1 and not settings.redis_url:
        return [f"{settings.workers} workers without redis_url: each worker keeps its own "
                "rate-limit buckets, so a key may make up to "
                f"{settings.workers} x rate_limit_per_minute requests a minute (and a client "
                f"{settings.workers} x auth_failures_per_minute failed logins); set "
                "PHOTOGRADE_REDIS_URL to share them"]
    return []


def serve(settings: Settings, app: Any = "serve.app:app_from_env") -> None:
    """Run ``app`` with the server's limits: by default the factory of
    ``serve.app:app_from_env`` (in ``settings.workers`` processes that read the settings from
    the environment), or an app object in this process. Forwarded headers are the app's
    business (uvicorn's own trust 127.0.0.1)."""
    import uvicorn

    GuardedHttpTools.configure(settings)
    factory = isinstance(app, str)
    for warning in start_warnings(settings):
        logging.basicConfig(format="%(levelname)s:     %(message)s")  # uvicorn's look
        log.warning(warning)
    uvicorn.run(app, factory=factory, host=settings.host, port=settings.port,
                workers=settings.workers if factory else None, log_level="info",
                http=GuardedHttpTools, ws="none", proxy_headers=False,
                timeout_keep_alive=settings.timeout_keep_alive,
                h11_max_incomplete_event_size=settings.max_header_kb * 1024)
