"""Who the client is: the TCP peer, unless that peer is a configured reverse proxy.

`X-Forwarded-For` is believed only when the connection comes from an address in
`RAG_TRUSTED_PROXIES` (none by default); then the client is the right-most address in the chain
that is not itself a trusted proxy, since every hop appends and only the last hops are ours.
That address is what the access log records and the rate limit counts. The `Forwarded` header
(RFC 7239) is never read: proxies that set X-Forwarded-For pass a client's own `Forwarded` through.

Whether a request was relayed at all (`is_relayed`) is a separate question, answered from the
headers' presence alone: the keyless-writes rule treats any relayed request as not local, whoever
sent it. (`rag serve` runs uvicorn with its own proxy-header handling off, so `scope["client"]` is
the TCP peer when this middleware sees it.)
"""
from __future__ import annotations

import ipaddress
from collections.abc import Iterable

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
# Headers by which a proxy (or someone pretending to be one) says the request came from elsewhere.
RELAY_HEADERS = (b"x-forwarded-for", b"forwarded", b"x-real-ip", b"x-forwarded-host", b"via")
PEER_KEY = "rag.peer"  # scope key: the TCP peer's address, kept when scope["client"] is replaced


def parse_networks(entries: Iterable[str]) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(e, strict=False) for e in entries)


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = text.strip()
    if text.startswith("["):  # "[2001:db8::1]:4711"
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:  # "192.0.2.1:4711"
        text = text.partition(":")[0]
    try:
        return ipaddress.ip_address(text.split("%")[0])
    except ValueError:
        return None


def _trusted(address, proxies: tuple[IPNetwork, ...]) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address is not None and any(address in net for net in proxies)


def forwarded_client(peer: str, forwarded_for: list[str], proxies: tuple[IPNetwork, ...]) -> str:
    """The client address for a request from `peer` carrying these X-Forwarded-For values."""
    if not proxies or not _trusted(_address(peer), proxies):
        return peer
    hops = [h for value in forwarded_for for h in value.split(",") if h.strip()]
    client = peer
    for hop in reversed(hops):
        address = _address(hop)
        if address is None:  # a hop our proxy did not write sensibly: stop at the last one we could trust
            return client
        client = str(address)
        if not _trusted(address, proxies):
            return client
    return client


def is_relayed(scope) -> bool:
    return any(name in RELAY_HEADERS for name, _ in scope.get("headers", []))


def peer_address(scope) -> str | None:
    """The TCP peer's address, whatever scope["client"] says now."""
    peer = scope.get(PEER_KEY) or scope.get("client")
    return peer[0] if peer else None


class ClientAddress:
    """ASGI middleware: replace scope["client"] with the forwarded client when the peer is a trusted
    proxy; keep the peer under scope["rag.peer"]."""

    def __init__(self, app, trusted_proxies: Iterable[str]):
        self.app = app
        self.proxies = parse_networks(trusted_proxies)

    async def __call__(self, scope, receive, send):
        if scope["type"] in ("http", "websocket") and scope.get("client"):
            scope[PEER_KEY] = scope["client"]
            if self.proxies:
                values = [v.decode("latin-1") for n, v in scope.get("headers", []) if n == b"x-forwarded-for"]
                if values:
                    host, port = scope["client"]
                    client = forwarded_client(host, values, self.proxies)
                    if client != host:
                        scope["client"] = (client, 0)
        await self.app(scope, receive, send)
