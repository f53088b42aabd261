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
from dataclasses import dataclass
from typing import Callable

from fastapi import Depends, Request

from rag.config import Settings
from rag.errors import ForbiddenError, UnauthorizedError

from .origin import keyless_write_refusal
from .proxies import is_relayed, peer_address


def presented_key(request: Request) -> str | None:
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


@dataclass(frozen=True)
class Access:
    """Who may read and write one collection: the server's keys (`RAG_API_KEYS`, which administer
    every collection) and, for a named collection, its own keys. While any key is in force, writes
    need one, and reads too with RAG_PROTECT_READS; without keys, the keyless-write rules apply."""

    settings: Settings
    own_keys: Callable[[str | None], bool] | None = None

    @property
    def keys_in_force(self) -> bool:
        return bool(self.settings.api_keys) or self.own_keys is not None

    def key_ok(self, presented: str | None) -> bool:
        server_key = key_is_valid(presented, self.settings.api_keys)
        return server_key or (self.own_keys is not None and self.own_keys(presented))

    async def check_write(self, request: Request) -> None:
        settings = self.settings
        if self.keys_in_force:
            if not self.key_ok(presented_key(request)):
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

    async def check_read(self, request: Request) -> None:
        if self.settings.protect_reads and self.keys_in_force and not self.key_ok(presented_key(request)):
            raise UnauthorizedError("missing or invalid API key")

    def read(self) -> list:
        """`dependencies=` of a route that reads."""
        return [Depends(self.check_read)]

    def write(self) -> list:
        """`dependencies=` of a route that writes."""
        return [Depends(self.check_write)]


def require_write(settings: Settings):
    return Access(settings).check_write


def _is_loopback(address: str | None) -> bool:
    try:
        return address is not None and ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def require_read(settings: Settings):
    return Access(settings).check_read
