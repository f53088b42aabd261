"""`POST /ask` (JSON or Server-Sent Events) and `POST /search` over one collection's pipeline.

The work of a question (embedding, retrieval, the extractive answer) is CPU work with no I/O. It runs
in a worker thread, except for a question that is the only API request in flight: that one is
answered on the event loop's own thread, since nothing else waits for the loop and the hand-off to a
worker and back would only add two thread wake-ups (each a wait for a core when the machine is busy).
Answers from an LLM generator always go to a worker (they wait on the network), and so does the
question that is due to look for other processes' writes (it may reload the index from disk).
"""
from __future__ import annotations

import asyncio
from typing import Callable, TypeVar

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from rag.components import FALLBACK_GENERATOR
from rag.conversation import Turn
from rag.pipeline import Pipeline
from rag.service import AskResult, QueryService, SearchResult

from .auth import Access
from .errors import responses
from .guard import InFlight
from .schemas import AskRequest, SearchRequest
from .sse import STREAM_HEADERS, answer_frames


T = TypeVar("T")


async def run_cpu_work(inflight: InFlight | None, fn: Callable[..., T], *args, **kwargs) -> T:
    """`fn(*args, **kwargs)` on the event loop when this is the only API request in flight (`inflight`
    counts them; None: unknown, so always a worker thread), else in a worker thread."""
    if inflight is not None:
        await asyncio.sleep(0)  # requests read in the same turn of the loop reach the guard first
        if inflight.count <= 1:
            return fn(*args, **kwargs)
    return await run_in_threadpool(fn, *args, **kwargs)


def _cpu_only(service: QueryService, generator: str | None = FALLBACK_GENERATOR) -> bool:
    """Whether answering waits on nothing but the CPU: the offline generator, and no look at the disk due."""
    return (generator or service.generators.default.name) == FALLBACK_GENERATOR and not service.may_read_disk()


def register(app: FastAPI, pipeline: Pipeline, metrics, access: Access, inflight: InFlight | None = None) -> None:
    """The routes; `inflight` is the guard's count of API requests, when it counts this app's."""
    reads = access.read()

    @app.post("/ask", response_model=AskResult, response_model_exclude_none=True, dependencies=reads,
              responses={**responses(401, 413, 422, 502, 503, 504),
                         200: {"content": {"text/event-stream": {}},
                               "description": "JSON, or with `stream: true` Server-Sent Events: "
                                              "passages, delta..., citations, done (or error)."}})
    async def ask(request: AskRequest) -> AskResult:
        history = [Turn(m.role, m.content) for m in request.history]
        service = pipeline.ready_service()
        if request.stream:
            prepared = await run_in_threadpool(service.prepare, request.question, request.top_k,
                                               generator=request.generator, filters=request.filters,
                                               mode=request.mode, history=history)
            frames = answer_frames(service.events(prepared), on_final=metrics.observe_answer)
            return StreamingResponse(frames, media_type="text/event-stream", headers=STREAM_HEADERS)
        result = await run_cpu_work(inflight if _cpu_only(service, request.generator) else None, service.ask, request.question, request.top_k,
                                    generator=request.generator, filters=request.filters, mode=request.mode,
                                    history=history)
        metrics.observe_answer(result)
        return result

    @app.post("/search", response_model=SearchResult, response_model_exclude_none=True, dependencies=reads,
              responses=responses(401, 413, 422, 503))
    async def search(request: SearchRequest) -> SearchResult:
        service = pipeline.ready_service()
        passages = await run_cpu_work(inflight if _cpu_only(service) else None, service.search, request.query,
                                      request.top_k, filters=request.filters, mode=request.mode)
        return SearchResult(passages=passages)
