"""API keys: `Authorization: Bearer <key>`, compared in constant time. Keys never reach the logs."""
from __future__ import annotations

import hmac

from fastapi import Request

from rag.config import Settings

from rag.errors import ForbiddenError, UnauthorizedError


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

    return check


def require_read(settings: Settings):
    async def check(request: Request) -> None:
        if settings.protect_reads and settings.api_keys:
            if not key_is_valid(_presented_key(request), settings.api_keys):
                raise UnauthorizedError("missing or invalid API key")

    return check
