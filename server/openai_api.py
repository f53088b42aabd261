"""OpenAI-compatible chat: `POST /v1/chat/completions` and `GET /v1/models`, on the same pipeline.

Citations travel twice: in the content, as `[n]` markers followed by a "Sources:" list (by title and
place), and as the structured extension fields `citations` and `rag` (abstained, generator, query,
fallback) on the completion (or, when streaming, on the last chunk).

Each collection is a model: the default one is `RAG_CHAT_MODEL_NAME` ("rag"), a named one
"rag/<name>", so chat front ends pick a collection by model name.

`usage` counts tokens with the embedding model's tokenizer: the prompt is what the answer was made from
(the conversation and the retrieved passages), the completion is the content sent. With
`stream_options.include_usage` a final chunk with empty `choices` carries it, as OpenAI's API does.
Front ends' background prompts (chat titles, tags, follow-ups) are answered by `chat_tasks`.
"""
from __future__ import annotations

import logging
import time
import uuid
from typing import AsyncIterator

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from rag.collections import DEFAULT, Collections
from rag.conversation import Turn
from rag.errors import InvalidInputError, NotFoundError, RagError, UnauthorizedError
from rag.filters import Filter
from rag.generation import neutralise
from rag.pipeline import Pipeline
from rag.service import Delta, Failed, Final, Retrieved

from . import chat_tasks
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


log = logging.getLogger("rag.server")


def _place(c: dict) -> str:
    page = c.get("page") or (c.get("metadata") or {}).get("page")
    return f"page {page}" if page else f"chars {c['start']}-{c['end']}"


def sources_text(citations: list[dict]) -> str:
    """"Sources:" by title and place (the quote itself is in the answer and in `citations`)."""
    if not citations:
        return ""
    # Titles keep their own bracketed numbers out of the marker space, as the answer does.
    lines = [f'[{c["id"]}] {neutralise(c.get("title") or c.get("source") or c["document_id"])}, {_place(c)}'
             for c in citations]
    return "\n\nSources:\n" + "\n".join(lines)


def _token_counter(pipeline: Pipeline):
    """Token counts from the embedding model's tokenizer (word counts if it has none). The model is looked
    up on first use: creating the app must not load it."""

    def count(texts: list[str]) -> int:
        texts = [t for t in texts if t]
        if not texts:
            return 0
        count_tokens = getattr(pipeline.embedder, "count_tokens", None)
        if count_tokens is None:
            return sum(len(t.split()) for t in texts)
        return count_tokens(texts)

    return count


def usage_for(count, messages: list[ChatMessage], passages: list[dict], content: str) -> dict:
    prompt = count([_text(m) for m in messages] + [p["text"] for p in passages])
    completion = count([content])
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def include_usage(request: ChatCompletionRequest) -> bool:
    options = (request.model_extra or {}).get("stream_options")
    if options is None:
        return False
    if not isinstance(options, dict) or not isinstance(options.get("include_usage", False), bool):
        raise InvalidInputError("stream_options must be an object whose include_usage is true or false")
    return bool(options.get("include_usage"))


async def answer_task(pipeline: Pipeline, task: chat_tasks.ChatTask, messages: list[ChatMessage]) -> str:
    """A front end's background prompt: passed through to the LLM when one is configured, else (or when
    it fails) the offline reply."""
    llm = pipeline.generators.get("openai") if pipeline.settings.generator == "openai" else None
    if llm is not None:
        plain = [{"role": m.role if m.role != "developer" else "system", "content": _text(m)} for m in messages]
        try:
            return await run_in_threadpool(llm.complete, plain)
        except RagError as exc:  # the chat still gets a usable title/tags; the failure is in the log
            log.warning("background %s prompt: LLM failed (%s); answering offline", task.kind, exc)
    return task.offline_reply()


def register(app: FastAPI, pipeline: Pipeline, metrics, *, collections: Collections | None = None,
             router=None) -> None:
    model_name = pipeline.settings.chat_model_name
    prefix = model_name + "/"
    default_access = Access(pipeline.settings)
    count_tokens = _token_counter(pipeline)

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
        with_usage = include_usage(request)
        filters = _filters(request)
        completion_id = f"chatcmpl-{uuid.uuid4().hex}"
        created = int(time.time())
        task = chat_tasks.detect(question)
        if task is not None:
            content = await answer_task(served, task, request.messages)
            return task_response(request, completion_id, created, model_name_out, content,
                                 usage_for(count_tokens, request.messages, [], content), with_usage)
        service = served.ready_service()
        if not request.stream:
            answered = await run_in_threadpool(service.ask, question, history=history, filters=filters)
            metrics.observe_answer(answered)
            result = answered.model_dump(mode="json", exclude_none=True)
            content = result["answer"] + sources_text(result["citations"])
            return {
                "id": completion_id, "object": "chat.completion", "created": created, "model": model_name_out,
                "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}],
                # The LLM server's own counts when it answered and reported them; else our tokenizer's.
                "usage": answered.usage or usage_for(count_tokens, request.messages, result["passages"], content),
                "citations": result["citations"],
                "rag": _extension(result),
            }
        prepared = await run_in_threadpool(service.prepare, question, history=history, filters=filters)

        def chunk(delta: dict, finish: str | None = None, **extra) -> str:
            body = {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": model_name_out,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}
            if with_usage:
                body.setdefault("usage", None)  # OpenAI: null on every chunk but the last
            return event(None, body)

        async def frames() -> AsyncIterator[str]:
            sent: list[str] = []
            passages: list[dict] = []
            yield chunk({"role": "assistant", "content": ""})
            async for e in service.events(prepared):
                if isinstance(e, Retrieved):
                    passages = [p.model_dump(mode="json") for p in e.passages]
                elif isinstance(e, Delta):
                    sent.append(e.text)
                    yield chunk({"content": e.text})
                elif isinstance(e, Final):
                    metrics.observe_answer(e.result)
                    data = e.result.model_dump(mode="json", exclude_none=True)
                    sources = sources_text(data["citations"])
                    if sources:
                        sent.append(sources)
                        yield chunk({"content": sources})
                    yield chunk({}, "stop", citations=data["citations"], rag=_extension(data))
                elif isinstance(e, Failed):
                    yield event(None, {"error": {"message": e.detail, "type": "upstream_error",
                                                 "param": None, "code": None}})
            if with_usage:
                usage = usage_for(count_tokens, request.messages, passages, "".join(sent))
                yield event(None, {"id": completion_id, "object": "chat.completion.chunk", "created": created,
                                   "model": model_name_out, "choices": [], "usage": usage})
            yield event(None, "[DONE]")

        return StreamingResponse(frames(), media_type="text/event-stream", headers=STREAM_HEADERS)


def task_response(request: ChatCompletionRequest, completion_id: str, created: int, model_name: str, content: str,
                  usage: dict, with_usage: bool):
    """A background task's reply, as a completion or as a stream of chunks."""
    if not request.stream:
        return {"id": completion_id, "object": "chat.completion", "created": created, "model": model_name,
                "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}],
                "usage": usage}

    def frames():
        base = {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": model_name}
        extra = {"usage": None} if with_usage else {}
        yield event(None, {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": content},
                                                "finish_reason": None}], **extra})
        yield event(None, {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}], **extra})
        if with_usage:
            yield event(None, {**base, "choices": [], "usage": usage})
        yield event(None, "[DONE]")

    return StreamingResponse(frames(), media_type="text/event-stream", headers=STREAM_HEADERS)


def _filters(request: ChatCompletionRequest) -> Filter | None:
    """The extension field `rag_filters` (same syntax as `filters` on /ask; OpenAI clients send it with
    `extra_body={"rag_filters": {...}}`)."""
    raw = (request.model_extra or {}).get("rag_filters")
    if raw is not None and not isinstance(raw, dict):
        raise InvalidInputError("rag_filters must be an object")
    return Filter.parse(raw, where="rag_filters")


def _extension(result: dict) -> dict:
    return {k: result.get(k) for k in ("abstained", "generator", "query", "fallback", "segments") if k in result}
