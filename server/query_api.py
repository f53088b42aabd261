"""`POST /ask` (JSON or Server-Sent Events) and `POST /search` over one collection's pipeline."""
from __future__ import annotations

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from rag.conversation import Turn
from rag.pipeline import Pipeline
from rag.service import AskResult, SearchResult

from .auth import Access
from .errors import responses
from .schemas import AskRequest, SearchRequest
from .sse import STREAM_HEADERS, answer_frames


def register(app: FastAPI, pipeline: Pipeline, metrics, access: Access) -> None:
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
        result = await run_in_threadpool(service.ask, request.question, request.top_k, generator=request.generator,
                                         filters=request.filters, mode=request.mode, history=history)
        metrics.observe_answer(result)
        return result

    @app.post("/search", response_model=SearchResult, response_model_exclude_none=True, dependencies=reads,
              responses=responses(401, 413, 422, 503))
    async def search(request: SearchRequest) -> SearchResult:
        passages = await run_in_threadpool(pipeline.ready_service().search, request.query, request.top_k,
                                           filters=request.filters, mode=request.mode)
        return SearchResult(passages=passages)
