"""Request body size limits as plain ASGI middleware: refused before the app parses anything.

A declared Content-Length over the limit is refused at once; otherwise (chunked bodies included)
the body is read up to the limit and replayed to the app, so a body that grows past the limit is
refused with 413 too, never half-parsed. Document uploads get their own, larger limit.
"""
from __future__ import annotations

import asyncio
import json


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
        limit = self.upload if scope["path"].startswith(self.upload_prefix) else self.small
        too_large = f"request body is over the {limit} byte limit"
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    return await _refuse(send, 400, "invalid Content-Length header")
                if declared > limit:
                    return await _refuse(send, 413, too_large)
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
                        return await _refuse(send, 413, too_large)
                    chunks.append(body)
                    if not message.get("more_body", False):
                        break
        except TimeoutError:
            return await _refuse(send, 408, f"request body not received within {self.read_timeout_s:g}s")
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


async def _refuse(send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
