"""The one place where `rag` exceptions become HTTP statuses."""
from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from rag.errors import (CancelledError, CircuitOpenError, ConflictError, DiskFullError, ForbiddenError, GeneratorError,
                        InputTooLargeError, InvalidInputError, NotFoundError, RagError, RequestError, StorageError,
                        UnauthorizedError, UnavailableError, UnsupportedMediaError, UpstreamTimeoutError)

log = logging.getLogger("rag.server")

# Status by exception class. An error takes the status of the nearest class in its own ancestry
# (type(exc).__mro__), so the table's order never matters. The tree is documented in rag/errors.py.
STATUS_BY_KIND: dict[type[RagError], int] = {
    RequestError: 400, CancelledError: 499, InvalidInputError: 422, InputTooLargeError: 413, NotFoundError: 404,
    UnsupportedMediaError: 415, UnauthorizedError: 401, ForbiddenError: 403, ConflictError: 409,
    # A write not wholly on disk is refused, never acknowledged: 507 when the disk is full, 503 for other
    # storage failures (I/O error, failed fsync); either way nothing was applied.
    UnavailableError: 503, StorageError: 503, DiskFullError: 507,
    GeneratorError: 502, UpstreamTimeoutError: 504, CircuitOpenError: 503,
}


def status_for(exc: RagError) -> int:
    return next((STATUS_BY_KIND[k] for k in type(exc).__mro__ if k in STATUS_BY_KIND), 500)


def _describe(errors: list[dict]) -> str:
    parts = []
    for e in errors:
        where = ".".join(str(x) for x in e.get("loc", ()) if x != "body") or "body"
        parts.append(f"{where}: {e.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


_OPENAI_TYPES = {401: "authentication_error", 403: "permission_error", 404: "not_found_error",
                 413: "invalid_request_error", 422: "invalid_request_error", 429: "rate_limit_error",
                 502: "upstream_error", 503: "server_error", 504: "timeout_error", 507: "server_error",
                 500: "server_error"}


def error_body(path: str, status: int, message: str, code: str | None = None) -> dict:
    """`{"detail": ...}` on our own API; OpenAI's error object under /v1/ so its clients understand it.
    Routes and the ASGI middlewares (size limit, rate limit, host check) all answer through this."""
    if path.startswith("/v1/"):
        return {"error": {"message": message, "type": _OPENAI_TYPES.get(status, "invalid_request_error"),
                          "param": None, "code": code}}
    return {"detail": message}


def error_response(request: Request, status: int, message: str, code: str | None = None) -> JSONResponse:
    return JSONResponse(error_body(request.url.path, status, message, code), status_code=status)


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


DESCRIPTIONS = {
    400: "Malformed request (a Host header that is not a host name)", 401: "Missing or invalid API key",
    403: "Writes disabled, or a keyless write from another site or through a proxy", 404: "Not found",
    408: "Request body not received in time", 409: "Conflicts with what exists", 413: "Over a size limit", 415: "Unsupported media type",
    421: "Host not served here", 422: "Invalid input", 429: "Rate limited (see Retry-After)",
    502: "LLM server failed", 503: "Loading, overloaded or storage unavailable (see Retry-After)",
    504: "LLM server timed out", 507: "Insufficient storage: the write was not made",
}
# What the middleware in front of every API route can answer: the Host check (400, 421), the body
# limit and JSON bounds (408, 413, 422), rate limiting and shedding (429, 503).
MIDDLEWARE_STATUSES = (400, 408, 413, 421, 422, 429, 503)


def responses(*statuses: int) -> dict:
    """The `responses=` of one route: the error statuses it can really return (plus the middleware's),
    so that the OpenAPI schema is a contract a fuzzer can hold the server to."""
    return {s: {"description": DESCRIPTIONS[s]} for s in sorted({*statuses, *MIDDLEWARE_STATUSES})}


def document_errors(app: FastAPI) -> None:
    """Replace FastAPI's list-shaped 422 with our `{"detail": str}` (OpenAI's error object under /v1/)
    on every error status the routes declare."""
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
                for code, response in op.setdefault("responses", {}).items():
                    if code.isdigit() and int(code) >= 400:
                        response["content"] = {
                            "application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}}
        app.openapi_schema = spec
        return spec

    app.openapi = schema
