"""Server-Sent Events: framing, the headers that keep proxies from buffering a stream, and the
event vocabulary of a streamed answer (the library's typed events, named for the wire)."""
from __future__ import annotations

import json
from typing import AsyncIterator, Callable

from rag.service import AnswerEvent, AskResult, Delta, Failed, Final, Retrieved

STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no", "Connection": "keep-alive"}


def event(name: str | None, data: dict | str) -> str:
    payload = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    head = f"event: {name}\n" if name else ""
    return head + "".join(f"data: {line}\n" for line in payload.split("\n")) + "\n"


def final_answer(result: AskResult) -> dict:
    """The `citations` event's data: the final answer without the passages and timings sent apart."""
    return result.model_dump(mode="json", exclude={"passages", "timings_ms"}, exclude_none=True)


async def answer_frames(events: AsyncIterator[AnswerEvent],
                        on_final: Callable[[AskResult], None] | None = None) -> AsyncIterator[str]:
    """`/ask`'s stream: passages, delta..., citations, done; or error."""
    async for e in events:
        if isinstance(e, Retrieved):
            yield event("passages", {"passages": [p.model_dump(mode="json") for p in e.passages], "query": e.query})
        elif isinstance(e, Delta):
            yield event("delta", {"text": e.text})
        elif isinstance(e, Final):
            if on_final is not None:
                on_final(e.result)
            yield event("citations", final_answer(e.result))
            yield event("done", {"timings_ms": e.result.timings_ms})
        elif isinstance(e, Failed):
            yield event("error", {"detail": e.detail})
