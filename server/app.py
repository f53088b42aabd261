"""The FastAPI app: routes over the shared pipeline. Model work runs in worker threads."""
from __future__ import annotations

import logging
import threading

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from rag.config import Settings
from rag.pipeline import Pipeline

from . import errors
from .limits import BodySizeLimit
from .schemas import AskRequest, AskResponse, ErrorBody, SearchRequest, SearchResponse

log = logging.getLogger("rag.server")
ERRORS = {413: {"model": ErrorBody}, 422: {"model": ErrorBody}, 503: {"model": ErrorBody}}


def _filters(model) -> dict | None:
    return model.model_dump(exclude_none=True) if model is not None else None


def create_app(pipeline: Pipeline | None = None, *, settings: Settings | None = None,
               load_in_background: bool = True) -> FastAPI:
    pipeline = pipeline or Pipeline(settings or Settings())
    state = {"error": None}

    def load() -> None:
        try:
            if not pipeline.ready:
                pipeline.load()
            log.info("index ready: %d documents, %d chunks", len(pipeline.index.documents), len(pipeline.index.chunks))
        except Exception as exc:  # noqa: BLE001 - reported by /readyz and the log
            state["error"] = str(exc)
            log.error("cannot serve the index: %s", exc)

    async def lifespan(_: FastAPI):
        if load_in_background:
            threading.Thread(target=load, name="index-loader", daemon=True).start()
        else:
            load()
        yield

    app = FastAPI(title="RAG question answering", version="0.1.0", lifespan=lifespan,
                  description="Answers questions from your documents with exact, checkable citations.")
    app.state.pipeline = pipeline
    errors.install(app)

    @app.get("/healthz")
    async def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/readyz", responses={503: {"model": ErrorBody}})
    async def readyz():
        if pipeline.ready:
            idx = pipeline.index
            return {"status": "ready", "documents": len(idx.documents), "chunks": len(idx.chunks)}
        detail = f"index failed to load: {state['error']}" if state["error"] else "loading index"
        return JSONResponse({"detail": detail}, status_code=503)

    @app.post("/ask", response_model=AskResponse, response_model_exclude_none=True, responses=ERRORS)
    async def ask(request: AskRequest) -> dict:
        result = await run_in_threadpool(pipeline.ask, request.question, request.top_k,
                                         generator=request.generator, filters=_filters(request.filters),
                                         mode=request.mode)
        return result.to_dict()

    @app.post("/search", response_model=SearchResponse, responses=ERRORS)
    async def search(request: SearchRequest) -> dict:
        passages = await run_in_threadpool(pipeline.search, request.query, request.top_k,
                                           filters=_filters(request.filters), mode=request.mode)
        return {"passages": [p.to_dict() for p in passages]}

    app.add_middleware(BodySizeLimit, max_bytes=pipeline.settings.max_body_bytes)
    return app
