"""The one place where `rag` exceptions become HTTP statuses."""
from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from rag.errors import (IndexError_, InputTooLargeError, InvalidInputError, NotReadyError, RagError,
                        UpstreamError)

log = logging.getLogger("rag.server")


def status_for(exc: RagError) -> int:
    if isinstance(exc, InputTooLargeError):
        return 413
    if isinstance(exc, InvalidInputError):
        return 422
    if isinstance(exc, (NotReadyError, IndexError_)):
        return 503
    if isinstance(exc, UpstreamError):
        return 504 if exc.timeout else 502
    return 500


def _describe(errors: list[dict]) -> str:
    parts = []
    for e in errors:
        where = ".".join(str(x) for x in e.get("loc", ()) if x != "body") or "body"
        parts.append(f"{where}: {e.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


def install(app: FastAPI) -> None:
    @app.exception_handler(RagError)
    async def rag_error(_: Request, exc: RagError) -> JSONResponse:
        status = status_for(exc)
        if status >= 500:
            log.warning("request failed: %s", exc)
        return JSONResponse({"detail": str(exc)}, status_code=status)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            return JSONResponse({"detail": "request body is not valid JSON"}, status_code=422)
        return JSONResponse({"detail": _describe(errors)}, status_code=422)

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error")
        return JSONResponse({"detail": "internal error"}, status_code=500)
