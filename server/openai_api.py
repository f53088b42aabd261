"""OpenAI-compatible chat: `POST /v1/chat/completions` and `GET /v1/models`, on the same pipeline.

Citations travel twice: in the content, as `[n]` markers followed by a "Sources:" list, and as the
structured extension fields `citations` and `rag` (abstained, generator, query, fallback) on the
completion (or, when streaming, on the last chunk).
"""
from __future__ import annotations

import time
import uuid
from typing import AsyncIterator

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from rag.conversation import Turn
from rag.collections import DEFAULT, Collections
from rag.errors import InvalidInputError, NotFoundError, UnauthorizedError
from rag.pipeline import Pipeline
from rag.service import AskResult, Delta, Failed, Final

from .auth import Access, presented_key
from .errors import responses
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


def sources_text(citations) -> str:
    if not citations:
        return ""
    lines = [f'[{c.id}] {c.title} ({c.source}): "{c.text}"' for c in citations]
    return "\n\nSources:\n" + "\n".join(lines)


def register(app: FastAPI, pipeline: Pipeline, metrics, *, collections: Collections | None = None,
             router=None) -> None:
    """Each collection is a model: the default one is `RAG_CHAT_MODEL_NAME` ("rag"), a named one
    "rag/<name>", so chat front ends pick a collection by model name."""
    model_name = pipeline.settings.chat_model_name
    prefix = model_name + "/"
    default_access = Access(pipeline.settings)

    def collection_of(model: str) -> str | None:
        """The collection a model name serves (None: the default), or ModelNotFoundError."""
        if model == model_name:
            return None
        name = model[len(prefix):] if model.startswith(prefix) else ""
        if collections is None or router is None or name in ("", DEFAULT) or name not in collections.names():
            raise ModelNotFoundError(f"The model '{model[:100]}' does not exist; see GET /v1/models.")
        return name

    async def pipeline_for(model: str, http_request: Request) -> Pipeline:
        name = collection_of(model)
        if name is None:
            await default_access.check_read(http_request)
            return pipeline
        await router.access(name).check_read(http_request)  # before opening anything
        return (await router.app_for(name))[1]

    @app.get("/v1/models", responses=responses(401))
    async def models(http_request: Request) -> dict:
        """The models this caller may use: with protected reads, those its key opens."""
        names = [model_name] + [prefix + n for n in (collections.names()[1:] if collections else [])]
        if pipeline.settings.protect_reads:
            key = presented_key(http_request)
            names = [m for m in names if (default_access if collection_of(m) is None
                                          else router.access(collection_of(m))).key_ok(key)]
            if not names:
                raise UnauthorizedError("missing or invalid API key")
        return {"object": "list", "data": [{"id": m, "object": "model", "created": 0, "owned_by": "rag-service"}
                                           for m in names]}

    @app.post("/v1/chat/completions", responses=responses(401, 404, 413, 422, 502, 503, 504))
    async def chat_completions(request: ChatCompletionRequest, http_request: Request):
        served = await pipeline_for(request.model, http_request)
        model_name_out = request.model
        question, history = split_conversation(request.messages)
        completion_id = f"chatcmpl-{uuid.uuid4().hex}"
        created = int(time.time())
        service = served.ready_service()
        if not request.stream:
            result = await run_in_threadpool(service.ask, question, history=history)
            metrics.observe_answer(result)
            return {
                "id": completion_id, "object": "chat.completion", "created": created, "model": model_name_out,
                "choices": [{"index": 0, "finish_reason": "stop", "message": {
                    "role": "assistant", "content": result.answer + sources_text(result.citations)}}],
                "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
                "citations": _citations(result),
                "rag": _extension(result),
            }
        prepared = await run_in_threadpool(service.prepare, question, history=history)

        def chunk(delta: dict, finish: str | None = None, **extra) -> str:
            body = {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": model_name_out,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}
            return event(None, body)

        async def frames() -> AsyncIterator[str]:
            yield chunk({"role": "assistant", "content": ""})
            async for e in service.events(prepared):
                if isinstance(e, Delta):
                    yield chunk({"content": e.text})
                elif isinstance(e, Final):
                    metrics.observe_answer(e.result)
                    sources = sources_text(e.result.citations)
                    if sources:
                        yield chunk({"content": sources})
                    yield chunk({}, "stop", citations=_citations(e.result), rag=_extension(e.result))
                elif isinstance(e, Failed):
                    yield event(None, {"error": {"message": e.detail, "type": "upstream_error",
                                                 "param": None, "code": None}})
            yield event(None, "[DONE]")

        return StreamingResponse(frames(), media_type="text/event-stream", headers=STREAM_HEADERS)


def _citations(result: AskResult) -> list[dict]:
    return [c.model_dump(mode="json") for c in result.citations]


def _extension(result: AskResult) -> dict:
    return result.model_dump(mode="json", include={"abstained", "generator", "query", "fallback"}, exclude_none=True)
