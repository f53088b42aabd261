"""The Host header check, against DNS rebinding.

A page on `http://attacker.example:8000` whose name is made to resolve to 127.0.0.1 becomes, to
the browser, same-origin with a service on this machine: it can read answers and send writes. The
browser still sends `Host: attacker.example:8000`, so the server answers only for names it is
configured for, with 421 otherwise.

Always allowed: IP literals (a page whose origin is an IP address is that server itself, so no
rebinding is possible), `localhost` (browsers resolve it to loopback themselves), and the bind host.
Any other name must be listed in RAG_ALLOWED_HOSTS (`api.example.com`, `*.example.com` for its
subdomains, or `*` to turn the check off). Every path is checked, /healthz included: container and
orchestrator probes address the server by IP or as localhost, which pass.

Starlette's TrustedHostMiddleware does the matching part, but answers plain text, knows no IP-literal
rule and redirects to www.; this is the same check with our error shape.
"""
from __future__ import annotations

import ipaddress
import re

from .limits import send_error

# host, or [IPv6], then an optional port: what RFC 9110 allows in Host (no userinfo, no path).
_HOST = re.compile(r"(?P<host>\[[0-9A-Fa-f:.]+\]|[^\[\]:/@\s]+)(?::(?P<port>[0-9]{1,5}))?")


def parse_host(value: str) -> str | None:
    """The host part of a Host header, lower-cased and without brackets or a trailing dot; None when
    the header is not a host[:port]."""
    match = _HOST.fullmatch(value.strip())
    if match is None:
        return None
    host = match["host"].lower()
    if host.startswith("["):
        try:
            return str(ipaddress.IPv6Address(host[1:-1]))
        except ValueError:
            return None
    return host.rstrip(".") or None


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class HostPolicy:
    def __init__(self, allowed: list[str], bind_host: str):
        self.any = "*" in allowed
        names = {h.strip("[]").rstrip(".").lower() for h in allowed if h != "*" and not h.startswith("*.")}
        names |= {"localhost", bind_host.strip("[]").rstrip(".").lower()}
        self.names = {str(ipaddress.ip_address(n)) if _is_ip(n) else n for n in names if n}
        self.suffixes = tuple(h[1:].lower() for h in allowed if h.startswith("*."))  # ".example.com"

    def allows(self, host: str) -> bool:
        return self.any or host in self.names or _is_ip(host) or host.endswith(self.suffixes)


class HostCheck:
    """ASGI middleware: 421 for a Host header naming a host this server is not configured for."""

    def __init__(self, app, allowed_hosts: list[str], bind_host: str):
        self.app = app
        self.policy = HostPolicy(allowed_hosts, bind_host)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or self.policy.any:
            return await self.app(scope, receive, send)
        values = [v for n, v in scope.get("headers", []) if n == b"host"]
        if values:  # no Host at all: an HTTP/1.0 client, never a browser
            raw = values[0].decode("latin-1")
            host = parse_host(raw) if len(values) == 1 else None
            if host is None:
                return await send_error(send, scope["path"], 400, "invalid Host header")
            if not self.policy.allows(host):
                return await send_error(send, scope["path"], 421,
                                        f"host {host[:100]!r} is not served here (the operator can allow "
                                        f"it with RAG_ALLOWED_HOSTS)")
        await self.app(scope, receive, send)
