"""Request body limits as plain ASGI middleware: refused before the app parses anything.

A declared Content-Length over the limit is refused at once; otherwise (chunked bodies included)
the body is read up to the limit and replayed to the app, so a body that grows past the limit is
refused with 413 too, never half-parsed. Document uploads get their own, larger limit. A body the
app will parse as JSON is checked first (UTF-8, nesting depth, lone surrogates: see jsonbounds),
so deep or unencodable JSON gets the same 422 on every route and never reaches a parser or a store.
"""
from __future__ import annotations

import asyncio
import json

from starlette.concurrency import run_in_threadpool

from .errors import error_body
from .jsonbounds import JsonBodyError, check_json_body, is_json_content_type

# Bodies above this are scanned in a worker thread, so the event loop keeps serving meanwhile.
_SCAN_INLINE_BYTES = 256 * 1024


class BodySizeLimit:
    def __init__(self, app, max_bytes: int, upload_bytes: int | None = None, upload_prefix: str = "/documents",
                 read_timeout_s: float = 30.0):
        self.app = app
        self.read_timeout_s = read_timeout_s
        self.small = max_bytes
        self.upload = upload_bytes or max_bytes
        self.upload_prefix = upload_prefix

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS", "DELETE"):
            return await self.app(scope, receive, send)
        path = scope["path"]
        limit = self.upload if path.startswith(self.upload_prefix) else self.small
        too_large = f"request body is over the {limit} byte limit"
        content_type = None
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    return await send_error(send, path, 400, "invalid Content-Length header")
                if declared > limit:
                    return await send_error(send, path, 413, too_large)
            elif name == b"content-type":
                content_type = value.decode("latin-1")
        chunks, size = [], 0
        try:
            async with asyncio.timeout(self.read_timeout_s):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return
                    body = message.get("body", b"")
                    size += len(body)
                    if size > limit:
                        return await send_error(send, path, 413, too_large)
                    chunks.append(body)
                    if not message.get("more_body", False):
                        break
        except TimeoutError:
            return await send_error(send, path, 408, f"request body not received within {self.read_timeout_s:g}s")
        whole = b"".join(chunks)
        if whole and is_json_content_type(content_type):
            try:
                if len(whole) > _SCAN_INLINE_BYTES:
                    await run_in_threadpool(check_json_body, whole)
                else:
                    check_json_body(whole)
            except JsonBodyError as exc:
                return await send_error(send, path, 422, str(exc))
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": whole, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


async def send_error(send, path: str, status: int, detail: str, headers: list[tuple[bytes, bytes]] = ()) -> None:
    """An error answered by middleware, in the same shape as the routes' (OpenAI's under /v1/)."""
    body = json.dumps(error_body(path, status, detail)).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *headers]})
    await send({"type": "http.response.body", "body": body})
