"""The FastAPI app: routes over the shared pipeline. Model work runs in worker threads."""
from __future__ import annotations

import logging
import threading
from pathlib import Path

from fastapi import Depends, FastAPI
from fastapi.concurrency import run_in_threadpool
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from rag.config import Settings
from rag.conversation import Turn
from rag.pipeline import Pipeline

from . import documents_api, errors, openai_api
from .auth import require_read
from .guard import Guard
from .limits import BodySizeLimit
from .observability import Metrics, RequestContext, journal_health
from .schemas import AskRequest, AskResponse, ErrorBody, SearchRequest, SearchResponse
from .sse import STREAM_HEADERS, event

STATIC = Path(__file__).resolve().parent / "static"

log = logging.getLogger("rag.server")
ERRORS = {413: {"model": ErrorBody}, 422: {"model": ErrorBody}, 503: {"model": ErrorBody}}


def _filters(model) -> dict | None:
    return model.model_dump(exclude_none=True) if model is not None else None


def create_app(pipeline: Pipeline | None = None, *, settings: Settings | None = None,
               load_in_background: bool = True) -> FastAPI:
    pipeline = pipeline or Pipeline(settings or Settings())
    state = {"error": None, "warm": False}

    def load() -> None:
        try:
            if not pipeline.ready:
                pipeline.load()
        except Exception as exc:  # noqa: BLE001 - reported by /readyz and the log
            state["error"] = str(exc)
            log.error("cannot serve the index: %s", exc)
            return
        try:
            # One untimed question first: the model's first run is several times slower than later ones.
            pipeline.ask("What is this collection of documents about?", generator="extractive")
        except Exception as exc:  # noqa: BLE001 - a failed warm-up only costs the first request time
            log.warning("warm-up question failed: %s", exc)
        state["warm"] = True
        log.info("index ready: %d documents, %d chunks", len(pipeline.index.documents), len(pipeline.index.chunks))

    async def lifespan(_: FastAPI):
        s = pipeline.settings
        if not s.api_keys:
            log.warning("no RAG_API_KEYS set: document writes are %s",
                        "allowed from this machine only (bound to loopback)" if s.loopback_only
                        else "disabled, since the server listens beyond loopback")
        if load_in_background:
            threading.Thread(target=load, name="index-loader", daemon=True).start()
        else:
            load()
        yield
        await run_in_threadpool(pipeline.compact)  # a clean stop leaves a snapshot and an empty journal

    app = FastAPI(title="RAG question answering", version="0.1.0", lifespan=lifespan,
                  description="Answers questions from your documents with exact, checkable citations.")
    app.state.pipeline = pipeline
    metrics = app.state.metrics = Metrics(pipeline)
    errors.install(app)

    @app.get("/metrics", include_in_schema=False)
    async def prometheus_metrics() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/healthz")
    async def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/readyz", responses={503: {"model": ErrorBody}})
    async def readyz():
        if pipeline.ready and state["warm"]:
            idx = pipeline.index
            body = {"status": "ready", "documents": len(idx.documents), "chunks": len(idx.chunks)}
            return {**body, **await run_in_threadpool(journal_health, pipeline)}
        detail = f"index failed to load: {state['error']}" if state["error"] else "loading index"
        return JSONResponse({"detail": detail}, status_code=503)

    reads = [Depends(require_read(pipeline.settings))]

    @app.post("/ask", response_model=AskResponse, response_model_exclude_none=True, dependencies=reads,
              responses={**ERRORS, 200: {"content": {"text/event-stream": {}},
                                         "description": "JSON, or with `stream: true` Server-Sent Events: "
                                                        "passages, delta..., citations, done (or error)."}})
    async def ask(request: AskRequest):
        history = [Turn(m.role, m.content) for m in request.history]
        if request.stream:
            prepared = await run_in_threadpool(pipeline.prepare, request.question, request.top_k,
                                               generator=request.generator, filters=_filters(request.filters),
                                               mode=request.mode, history=history)

            async def frames():
                final = None
                async for name, data in pipeline.stream(prepared):
                    if name == "citations":
                        final = data
                    elif name == "done" and final is not None:
                        metrics.observe_answer(final, data["timings_ms"])
                    yield event(name, data)

            return StreamingResponse(frames(), media_type="text/event-stream", headers=STREAM_HEADERS)
        result = (await run_in_threadpool(pipeline.ask, request.question, request.top_k,
                                          generator=request.generator, filters=_filters(request.filters),
                                          mode=request.mode, history=history)).to_dict()
        metrics.observe_answer(result, result["timings_ms"])
        return JSONResponse(result)  # already in the response model's shape: skip re-validating it

    @app.post("/search", response_model=SearchResponse, responses=ERRORS, dependencies=reads)
    async def search(request: SearchRequest) -> dict:
        passages = await run_in_threadpool(pipeline.search, request.query, request.top_k,
                                           filters=_filters(request.filters), mode=request.mode)
        return JSONResponse({"passages": [p.to_dict() for p in passages]})

    @app.get("/", include_in_schema=False)
    async def demo_page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/widget.js", include_in_schema=False)
    async def widget() -> FileResponse:
        return FileResponse(STATIC / "widget.js", media_type="text/javascript",
                            headers={"Cache-Control": "public, max-age=300"})

    openai_api.register(app, pipeline, metrics)
    documents_api.register(app, pipeline, metrics)
    s = pipeline.settings
    # Added innermost first: request context -> CORS -> body limit -> rate limit / shedding -> routes.
    # The body is read (bounded in size and time) before a request takes an in-flight slot, so slow
    # senders cannot hold the slots.
    app.add_middleware(Guard, rate=s.rate_limit, burst=s.rate_burst, max_inflight=s.max_inflight, metrics=metrics)
    app.add_middleware(BodySizeLimit, max_bytes=s.max_body_bytes, upload_bytes=s.max_upload_bytes)
    # Cross-origin use (the widget on someone's page) only for the origins listed in settings.
    app.add_middleware(CORSMiddleware, allow_origins=s.cors_origins, allow_credentials=False,
                       allow_methods=["GET", "POST", "PUT", "DELETE", "OPTIONS"],
                       allow_headers=["content-type", "authorization", "x-request-id"],
                       expose_headers=["x-request-id", "retry-after"], max_age=600)
    app.add_middleware(RequestContext, metrics=metrics)
    errors.document_errors(app)
    return app
