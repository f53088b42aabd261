"""Server-Sent Events framing and the headers that keep proxies from buffering a stream."""
from __future__ import annotations

import json

STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no", "Connection": "keep-alive"}


def event(name: str | None, data: dict | str) -> str:
    payload = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    head = f"event: {name}\n" if name else ""
    return head + "".join(f"data: {line}\n" for line in payload.split("\n")) + "\n"
