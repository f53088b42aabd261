"""The one place where `rag` exceptions become HTTP statuses."""
from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from rag.errors import (DiskFullError, IndexError_, InputTooLargeError, InvalidInputError, NotFoundError,
                        NotReadyError, RagError, StorageError, UpstreamError)

log = logging.getLogger("rag.server")


class UnauthorizedError(RagError):
    """401: a missing or wrong API key (the message never says which)."""


class WritesDisabledError(RagError):
    """403: no API keys configured while the server is reachable beyond loopback."""


class UnsupportedMediaError(RagError):
    """415: a body or file type the API does not take."""


# Most specific first: NotFoundError and InputTooLargeError are kinds of InvalidInputError.
_STATUSES: tuple[tuple[type[RagError] | tuple[type[RagError], ...], int], ...] = (
    (UnauthorizedError, 401), (WritesDisabledError, 403), (UnsupportedMediaError, 415), (NotFoundError, 404),
    (InputTooLargeError, 413), (InvalidInputError, 422), ((NotReadyError, IndexError_), 503),
    # A write not wholly on disk is refused, never acknowledged: 507 when the disk is full, 503 for
    # other storage failures (I/O error, failed fsync); either way nothing was applied.
    (DiskFullError, 507), (StorageError, 503),
)


def status_for(exc: RagError) -> int:
    if isinstance(exc, UpstreamError):
        return 504 if exc.timeout else 502
    return next((status for kinds, status in _STATUSES if isinstance(exc, kinds)), 500)


def _describe(errors: list[dict]) -> str:
    parts = []
    for e in errors:
        where = ".".join(str(x) for x in e.get("loc", ()) if x != "body") or "body"
        parts.append(f"{where}: {e.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


_OPENAI_TYPES = {401: "authentication_error", 404: "not_found_error", 413: "invalid_request_error",
                 422: "invalid_request_error", 429: "rate_limit_error", 502: "upstream_error", 503: "server_error",
                 504: "timeout_error", 507: "server_error", 500: "server_error"}


def error_response(request: Request, status: int, message: str, code: str | None = None) -> JSONResponse:
    """`{"detail": ...}` on our own API; OpenAI's error object under /v1/ so its clients understand it."""
    if request.url.path.startswith("/v1/"):
        body = {"error": {"message": message, "type": _OPENAI_TYPES.get(status, "invalid_request_error"),
                          "param": None, "code": code}}
        return JSONResponse(body, status_code=status)
    return JSONResponse({"detail": message}, status_code=status)


def install(app: FastAPI) -> None:
    @app.exception_handler(RagError)
    async def rag_error(request: Request, exc: RagError) -> JSONResponse:
        status = status_for(exc)
        if status >= 500:
            log.warning("request failed: %s", exc)
        return error_response(request, status, str(exc), getattr(exc, "code", None))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            return error_response(request, 422, "request body is not valid JSON")
        return error_response(request, 422, _describe(errors))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400 and "parsing the body" in str(exc.detail):  # e.g. bytes that are not UTF-8
            return error_response(request, 422, "request body is not valid JSON")
        response = error_response(request, exc.status_code, str(exc.detail))
        for name, value in (exc.headers or {}).items():
            response.headers[name] = value
        return response

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error")
        return error_response(request, 500, "internal error")


# Statuses any API operation may answer, documented on every operation so that the OpenAPI schema
# tells the truth (the fuzz tests check responses against it).
_DOCUMENTED = {
    "401": "Missing or invalid API key", "408": "Request body not received in time", "403": "Writes disabled", "404": "Not found",
    "413": "Over a size limit", "415": "Unsupported media type", "422": "Invalid input",
    "429": "Rate limited (see Retry-After)", "502": "LLM server failed",
    "503": "Loading, overloaded, or storage failed", "504": "LLM server timed out",
    "507": "Disk full: the write was not applied",
}


def document_errors(app: FastAPI) -> None:
    """Replace FastAPI's list-shaped 422 with our `{"detail": str}` (OpenAI's error object under /v1/)
    and document the shared error statuses on every API operation."""
    from fastapi.openapi.utils import get_openapi

    from .schemas import ErrorBody, OpenAIError

    def schema() -> dict:
        if app.openapi_schema:
            return app.openapi_schema
        spec = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        components = spec.setdefault("components", {}).setdefault("schemas", {})
        for model in (ErrorBody, OpenAIError):
            definition = model.model_json_schema(ref_template="#/components/schemas/{model}")
            components.update(definition.pop("$defs", {}))
            components[model.__name__] = definition
        components.pop("HTTPValidationError", None)
        components.pop("ValidationError", None)
        for path, operations in spec.get("paths", {}).items():
            name = "OpenAIError" if path.startswith("/v1/") else "ErrorBody"
            for op in operations.values():
                responses = op.setdefault("responses", {})
                for code, description in _DOCUMENTED.items():
                    responses[code] = {"description": description, "content": {
                        "application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}}}
        app.openapi_schema = spec
        return spec

    app.openapi = schema
