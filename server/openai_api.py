"""OpenAI-compatible chat: `POST /v1/chat/completions` and `GET /v1/models`, on the same pipeline.

Citations travel twice: in the content, as `[n]` markers followed by a "Sources:" list, and as the
structured extension fields `citations` and `rag` (abstained, generator, query, fallback, segments) on the
completion (or, when streaming, on the last chunk).
"""
from __future__ import annotations

import time
import uuid
from typing import AsyncIterator

from fastapi import Depends, FastAPI
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from rag.conversation import Turn
from rag.errors import InvalidInputError, NotFoundError
from rag.generation import neutralise
from rag.pipeline import Pipeline

from .auth import require_read
from .schemas import ChatCompletionRequest, ChatMessage
from .sse import STREAM_HEADERS, event


class ModelNotFoundError(NotFoundError):
    code = "model_not_found"


def _text(message: ChatMessage) -> str:
    if isinstance(message.content, str):
        return message.content
    if isinstance(message.content, list):  # content parts: keep the text ones
        return "".join(p["text"] for p in message.content
                       if isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str))
    return ""


def split_conversation(messages: list[ChatMessage]) -> tuple[str, list[Turn]]:
    """The last user message is the question; earlier user/assistant turns are history."""
    if messages[-1].role != "user":
        raise InvalidInputError("the last message must have role 'user'")
    history = [Turn(m.role, _text(m)) for m in messages[:-1] if m.role in ("user", "assistant") and _text(m).strip()]
    return _text(messages[-1]), history


def sources_text(citations: list[dict]) -> str:
    if not citations:
        return ""
    # Quotes and titles keep their own bracketed numbers out of the marker space, as the answer does.
    lines = [f'[{c["id"]}] {neutralise(c["title"])} ({neutralise(c["source"])}): "{neutralise(c["text"])}"'
             for c in citations]
    return "\n\nSources:\n" + "\n".join(lines)


def register(app: FastAPI, pipeline: Pipeline, metrics) -> None:
    model_name = pipeline.settings.chat_model_name

    def check_model(name: str) -> None:
        if name != model_name:
            raise ModelNotFoundError(f"The model '{name}' does not exist; this server serves '{model_name}'.")

    reads = [Depends(require_read(pipeline.settings))]

    @app.get("/v1/models", dependencies=reads)
    async def models() -> dict:
        return {"object": "list", "data": [{"id": model_name, "object": "model", "created": 0, "owned_by": "rag-service"}]}

    @app.post("/v1/chat/completions", dependencies=reads)
    async def chat_completions(request: ChatCompletionRequest):
        check_model(request.model)
        question, history = split_conversation(request.messages)
        completion_id = f"chatcmpl-{uuid.uuid4().hex}"
        created = int(time.time())
        if not request.stream:
            result = (await run_in_threadpool(pipeline.ask, question, history=history)).to_dict()
            metrics.observe_answer(result, result["timings_ms"])
            return {
                "id": completion_id, "object": "chat.completion", "created": created, "model": model_name,
                "choices": [{"index": 0, "finish_reason": "stop", "message": {
                    "role": "assistant", "content": result["answer"] + sources_text(result["citations"])}}],
                "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
                "citations": result["citations"],
                "rag": _extension(result),
            }
        prepared = await run_in_threadpool(pipeline.prepare, question, history=history)

        def chunk(delta: dict, finish: str | None = None, **extra) -> str:
            body = {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": model_name,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}
            return event(None, body)

        async def frames() -> AsyncIterator[str]:
            final: list[dict] = []
            yield chunk({"role": "assistant", "content": ""})
            async for name, data in pipeline.stream(prepared):
                if name == "delta":
                    yield chunk({"content": data["text"]})
                elif name == "done" and final:
                    metrics.observe_answer(final[0], data["timings_ms"])
                elif name == "citations":
                    final.append(data)
                    sources = sources_text(data["citations"])
                    if sources:
                        yield chunk({"content": sources})
                    yield chunk({}, "stop", citations=data["citations"], rag=_extension(data))
                elif name == "error":
                    yield event(None, {"error": {"message": data["detail"], "type": "upstream_error",
                                                 "param": None, "code": None}})
            yield event(None, "[DONE]")

        return StreamingResponse(frames(), media_type="text/event-stream", headers=STREAM_HEADERS)


def _extension(result: dict) -> dict:
    return {k: result.get(k) for k in ("abstained", "generator", "query", "fallback", "segments") if k in result}
