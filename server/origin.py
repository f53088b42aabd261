"""Which browser requests may write without an API key.

Without keys, writes are taken only from this machine; but a web page the local user opens runs
on this machine too, and a browser sends "simple" cross-origin requests (a form post, a
`fetch(..., {mode: "no-cors"})` multipart upload) without asking the server first. CORS only hides
the response from the page; the write would already have happened. So a keyless write that
carries any sign of a browser (`Origin`, `Sec-Fetch-*`) must:

- not be cross-site (`Sec-Fetch-Site: cross-site` is refused, whatever the origin);
- come from an allowed origin: the server's own (same scheme-less host and port as `Host`) or one
  listed in RAG_CORS_ORIGINS (`*` there opens reads, never keyless writes); `Origin: null`
  (sandboxed frames, file pages) is never allowed;
- be a request the browser would have preflighted: a JSON body, a non-POST method, or a custom
  `X-RAG-Client` / `X-Requested-With` header. A page can add such a header only after a CORS
  preflight that the server answers for allowed origins only.

Requests with none of those headers (curl, the CLI, Python clients) are not from a browser page and
pass: a page cannot remove the headers its browser adds.
"""
from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from .hosts import parse_host

BROWSER_HEADERS = ("origin", "sec-fetch-site", "sec-fetch-mode", "sec-fetch-dest")
CLIENT_HEADERS = ("x-rag-client", "x-requested-with")
# CORS-safelisted request content types: a browser sends these cross-origin without asking first.
SIMPLE_TYPES = ("", "text/plain", "multipart/form-data", "application/x-www-form-urlencoded")
_DEFAULT_PORTS = {"http": 80, "https": 443}


def _origin_address(origin: str) -> tuple[str, int] | None:
    try:
        parts = urlsplit(origin)
        port = parts.port or _DEFAULT_PORTS.get(parts.scheme)
    except ValueError:
        return None
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname or port is None:
        return None
    host = parts.hostname.rstrip(".")
    try:
        host = str(ipaddress.ip_address(host))
    except ValueError:
        pass
    return host, port


def _host_address(host_header: str, scheme: str) -> tuple[str, int] | None:
    host = parse_host(host_header)
    if host is None:
        return None
    _, sep, port = host_header.rpartition(":")
    explicit = sep and port.isdigit() and not host_header.endswith("]")
    return host, int(port) if explicit else _DEFAULT_PORTS.get(scheme, 80)


def origin_allowed(origin: str, host_header: str, scheme: str, listed: list[str]) -> bool:
    if origin.rstrip("/") in listed:
        return True
    mine = _host_address(host_header, scheme)
    return mine is not None and _origin_address(origin) == mine


def keyless_write_refusal(headers, method: str, scheme: str, listed_origins: list[str]) -> str | None:
    """Why this keyless write must be refused as coming from another site's page; None to accept.
    `headers` is a case-insensitive mapping (Starlette's Headers)."""
    if not any(name in headers for name in BROWSER_HEADERS):
        return None
    site = headers.get("sec-fetch-site", "").lower()
    if site == "cross-site":
        return "cross-site request refused: without an API key, only this server's own pages may write"
    origin = headers.get("origin")
    if origin is None:
        if site not in ("", "same-origin", "none"):  # same-site, yet no Origin to say which site
            return "request from another origin refused: without an API key, only this server's own pages may write"
    elif not origin_allowed(origin, headers.get("host", ""), scheme, [o for o in listed_origins if o != "*"]):
        return (f"origin {origin[:100]!r} may not write without an API key (this server's own pages and origins "
                f"listed in RAG_CORS_ORIGINS may)")
    media = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if method == "POST" and media in SIMPLE_TYPES and not any(name in headers for name in CLIENT_HEADERS):
        return ("a browser upload must send an X-RAG-Client header (any value): it makes the browser ask the "
                "server first, so other sites' pages cannot send it")
    return None
