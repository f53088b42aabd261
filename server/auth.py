"""Who may read and write.

With API keys (`Authorization: Bearer <key>`, compared in constant time, never logged): writes need
a key, and reads too with RAG_PROTECT_READS. Without keys, writes are taken only when the server
listens on loopback, the connection comes straight from this machine (no proxy in between, whatever
the forwarded headers say), and, for requests from a browser, from this server's own pages or a
listed origin, never cross-site (see origin.py). docs/security.md describes the whole model.
"""
from __future__ import annotations

import hmac
import ipaddress

from fastapi import Request

from rag.config import Settings

from rag.errors import ForbiddenError, UnauthorizedError

from .origin import keyless_write_refusal
from .proxies import is_relayed, peer_address


def _presented_key(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    return key.strip() if scheme.lower() == "bearer" and key.strip() else None


def key_is_valid(presented: str | None, keys: list[str]) -> bool:
    if presented is None:
        return False
    ok = False
    for key in keys:  # compare with every key, so timing does not tell how many matched or where
        ok |= hmac.compare_digest(presented.encode(), key.encode())
    return ok


def require_write(settings: Settings):
    async def check(request: Request) -> None:
        if settings.api_keys:
            if not key_is_valid(_presented_key(request), settings.api_keys):
                raise UnauthorizedError("missing or invalid API key")
        elif not settings.loopback_only:
            raise ForbiddenError("writes are disabled: set RAG_API_KEYS to allow them on a public address")
        else:
            if is_relayed(request.scope) or not _is_loopback(peer_address(request.scope)):
                raise ForbiddenError("writes without an API key are taken only from this machine directly, "
                                          "not through a proxy: set RAG_API_KEYS to allow them")
            reason = keyless_write_refusal(request.headers, request.method, request.url.scheme,
                                           settings.cors_origins)
            if reason is not None:
                raise ForbiddenError(reason)

    return check


def _is_loopback(address: str | None) -> bool:
    try:
        return address is not None and ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def require_read(settings: Settings):
    async def check(request: Request) -> None:
        if settings.protect_reads and settings.api_keys:
            if not key_is_valid(_presented_key(request), settings.api_keys):
                raise UnauthorizedError("missing or invalid API key")

    return check
