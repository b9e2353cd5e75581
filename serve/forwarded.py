"""Forwarded headers, believed only from the configured reverse proxies (``trusted_proxies``).

From a trusted proxy, the client's address is the nearest address in ``X-Forwarded-For`` that
is not itself a trusted proxy, and the scheme ``X-Forwarded-Proto``'s (``http``/``https``);
``X-Forwarded-Host`` is kept for the UI's same-origin check. From anyone else the forwarded
headers are dropped before the app sees them: a client cannot pick the address its failed
logins count against, nor the host its forms claim to come from. (uvicorn's own handling of
these headers is turned off by ``photograde serve``: it trusts 127.0.0.1 by default.)
"""

from __future__ import annotations

from collections.abc import Iterable
from ipaddress import IPv4Network, IPv6Network, ip_address, ip_network

from starlette.types import ASGIApp, Receive, Scope, Send

FORWARDED = (b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"forwarded",
             b"x-real-ip")


class Networks:
    """A set of addresses and networks (``"10.0.0.0/8"``, ``"127.0.0.1"``, IPv6 alike)."""

    def __init__(self, items: Iterable[str]):
        self.networks: list[IPv4Network | IPv6Network] = [ip_network(item, strict=False)
                                                          for item in items]

    def __bool__(self) -> bool:
        return bool(self.networks)

    def __contains__(self, address: object) -> bool:
        try:
            ip = ip_address(str(address))
        except ValueError:
            return False
        return any(ip in network for network in self.networks)


def forwarded_client(chain: str, trusted: Networks) -> str | None:
    """The client's address in an ``X-Forwarded-For`` value (each proxy appends its peer):
    from the right, the first address that is not a trusted proxy (None if there is none)."""
    hops = [hop.strip() for hop in chain.split(",") if hop.strip()]
    for hop in reversed(hops):
        if hop not in trusted:
            return hop
    return hops[0] if hops else None


class Forwarded:
    """Apply (from a trusted proxy) or drop (from anyone else) the forwarded headers."""

    def __init__(self, app: ASGIApp, *, trusted: Iterable[str]):
        self.app, self.trusted = app, Networks(trusted)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        peer = scope.get("client")
        if peer and peer[0] in self.trusted:
            chain = b",".join(v for k, v in scope["headers"] if k == b"x-forwarded-for")
            client = forwarded_client(chain.decode("latin-1"), self.trusted)
            if client:
                scope["client"] = (client, 0)
            protos = [v for k, v in scope["headers"] if k == b"x-forwarded-proto"]
            proto = protos[-1].decode("latin-1").strip().lower() if protos else ""
            if proto in ("http", "https"):
                scope["scheme"] = proto
        else:
            scope["headers"] = [(k, v) for k, v in scope["headers"] if k not in FORWARDED]
        await self.app(scope, receive, send)
