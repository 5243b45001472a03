"""Who is calling: the client address and scheme, trusting proxy headers only from proxies.

``X-Forwarded-For`` and ``X-Forwarded-Proto`` are believed only when the TCP peer is one
of ``settings.trusted_proxies`` (addresses or networks). Then the client is the rightmost
address of ``X-Forwarded-For`` that is not itself a trusted proxy (the leftmost entries
are whatever the client wrote). Any other peer's headers are ignored: a client on the
LAN cannot rotate ``X-Forwarded-For`` to dodge the per-address login throttle.

:class:`ForwardedHeaders` rewrites the ASGI scope's ``client`` and ``scheme`` in place, so
``request.client.host`` and ``request.url.scheme`` mean the real client everywhere after it.
uvicorn's own proxy-header handling is turned off (``hub.main``), this is the only one.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_proxies(values: Iterable[str]) -> tuple[Network, ...]:
    """The networks of ``trusted_proxies`` (a bare address is a /32 or /128).

    Raises:
        ValueError: a value is neither an address nor a network.
    """
    return tuple(ipaddress.ip_network(v.strip(), strict=False) for v in values)


class TrustedProxies:
    """Decides which peer's forwarding headers count, and who the client then is."""

    def __init__(self, proxies: Iterable[str]) -> None:
        self.networks = parse_proxies(proxies)

    def trusts(self, host: str) -> bool:
        if not self.networks:
            return False
        try:
            address = ipaddress.ip_address(host.strip().strip("[]"))
        except ValueError:
            return False
        return any(address in network for network in self.networks)

    def client(self, peer: str, forwarded_for: str | None) -> str:
        """The client's address given the TCP ``peer`` and its ``X-Forwarded-For``."""
        if not forwarded_for or not self.trusts(peer):
            return peer
        hops = [h.strip() for h in forwarded_for.split(",") if h.strip()]
        for hop in reversed(hops):
            if not self.trusts(hop):
                return hop
        return hops[0] if hops else peer


def _header(scope: Scope, name: bytes) -> str | None:
    values = [v.decode("latin-1") for k, v in scope.get("headers", ()) if k.lower() == name]
    return ",".join(values) if values else None


class ForwardedHeaders:
    """ASGI middleware: apply :class:`TrustedProxies` to every HTTP request's scope."""

    def __init__(self, app: ASGIApp, proxies: TrustedProxies) -> None:
        self.app = app
        self.proxies = proxies

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            client: Any = scope.get("client")
            peer = str(client[0]) if client else ""
            if self.proxies.trusts(peer):
                host = self.proxies.client(peer, _header(scope, b"x-forwarded-for"))
                scope["client"] = (host, 0)
                proto = _header(scope, b"x-forwarded-proto")
                if proto:
                    last = proto.split(",")[-1].strip().lower()
                    if last in ("http", "https"):
                        ws = scope["type"] == "websocket"
                        scope["scheme"] = {"http": "ws", "https": "wss"}[last] if ws else last
        await self.app(scope, receive, send)
