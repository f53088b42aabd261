"""The FastAPI app: routes over the shared pipeline. Model work runs in worker threads."""
from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from rag.config import Settings
from rag.collections import Collections
from rag.pipeline import Pipeline

from . import collections_api, docs_assets, documents_api, errors, feedback, openai_api, query_api, startup
from .auth import Access
from .guard import Guard, InFlight
from .hosts import HostCheck
from .limits import BodySizeLimit
from .observability import Metrics, RequestContext, journal_health, segment_health
from .origin import CLIENT_HEADERS
from .proxies import ClientAddress
from .schemas import ErrorBody

STATIC = Path(__file__).resolve().parent / "static"

WIDE_SESSION_WAIT_S = 10.0
log = logging.getLogger("rag.server")


def create_app(pipeline: Pipeline | None = None, *, settings: Settings | None = None,
               load_in_background: bool = True) -> FastAPI:
    """The app over `pipeline` (the caller's, who closes it) or over one made from `settings` (the
    app's own, closed when the app stops)."""
    owned = pipeline is None
    pipeline = pipeline or Pipeline(settings or Settings())
    state = {"error": None, "warm": False}

    def load() -> None:
        started = time.perf_counter()
        try:
            for note in startup.first_start_notes(pipeline.settings):
                log.info(note)
            pipeline.embedder  # noqa: B018 - loaded here to time it apart from the index
            model_s = time.perf_counter() - started
            if not pipeline.ready:
                pipeline.load()
            index_s = time.perf_counter() - started - model_s
        except Exception as exc:  # noqa: BLE001 - reported by /readyz and the log
            state["error"] = str(exc)
            log.error("cannot serve the index: %s", exc)
            return
        try:
            # One untimed question first: the model's first run is several times slower than later ones.
            pipeline.ask("What is this collection of documents about?", generator="extractive")
        except Exception as exc:  # noqa: BLE001 - a failed warm-up only costs the first request time
            log.warning("warm-up question failed: %s", exc)
        # The all-CPU session for lone questions is made and timed in the background (it overlaps the
        # index load); ready waits for it, briefly, so the first questions are not all on one thread.
        calibrated = getattr(pipeline.embedder, "calibrated", None)
        if calibrated is not None and not calibrated.wait(WIDE_SESSION_WAIT_S):
            log.warning("the all-CPU query session is not ready after %.0f s; serving on one thread meanwhile",
                        WIDE_SESSION_WAIT_S)
        state["warm"] = True
        log.info("index ready: %d documents, %d chunks (model %.1f s, index %.1f s, warm-up %.1f s)",
                 pipeline.index.document_count, pipeline.index.chunk_count, model_s, index_s,
                 time.perf_counter() - started - model_s - index_s)
        # Segments make their documents when first read (rag.lazy_documents), and a write looks its ids up
        # in every segment: build those id maps now, after ready, rather than in the first write.
        threading.Thread(target=pipeline.index.document, args=("",), name="index-ids", daemon=True).start()

    async def lifespan(_: FastAPI):
        s = pipeline.settings
        if not s.api_keys:
            log.warning("no RAG_API_KEYS set: document writes are %s",
                        "allowed from this machine only (bound to loopback; not through proxies, not from "
                        "other sites' pages)" if s.loopback_only
                        else "disabled, since the server listens beyond loopback")
        if load_in_background:
            threading.Thread(target=load, name="index-loader", daemon=True).start()
        else:
            load()
        yield
        await run_in_threadpool(pipeline.compact)  # a clean stop flushes: segments, a manifest, an empty journal
        await run_in_threadpool(collections.close)  # the named collections' pipelines (compacted first)
        if owned:
            pipeline.close()

    app = FastAPI(title="RAG question answering", version="0.1.0", lifespan=lifespan, docs_url=None, redoc_url=None,
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
            body = {"status": "degraded" if idx.damaged else "ready", "documents": idx.document_count, "chunks": idx.chunk_count,
                    "index_id": startup.index_id(pipeline.settings), **segment_health(pipeline)}
            return {**body, **await run_in_threadpool(journal_health, pipeline)}
        detail = f"index failed to load: {state['error']}" if state["error"] else "loading index"
        return JSONResponse({"detail": detail}, status_code=503)

    access = Access(pipeline.settings)
    inflight = app.state.inflight = InFlight()  # API requests in flight (counted by the guard)
    query_api.register(app, pipeline, metrics, access, inflight)

    @app.get("/", include_in_schema=False)
    async def demo_page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.api_route("/widget.js", methods=["GET", "HEAD"], include_in_schema=False)
    async def widget() -> FileResponse:
        return FileResponse(STATIC / "widget.js", media_type="text/javascript",
                            headers={"Cache-Control": "public, max-age=300"})

    documents_api.register(app, pipeline, metrics, access)
    collections = Collections(pipeline.settings, default=pipeline)
    router = collections_api.register(app, collections, metrics, access)
    openai_api.register(app, pipeline, metrics, collections=collections, router=router)
    feedback.register(app, pipeline, metrics)
    docs_assets.register(app)
    s = pipeline.settings
    # Added innermost first: client address -> request context -> Host check -> CORS -> body limit
    # (size, JSON depth and encoding) -> rate limit / shedding -> routes. The body is read (bounded in
    # size and time) before a request takes an in-flight slot, so slow senders cannot hold the slots.
    app.add_middleware(Guard, rate=s.rate_limit, burst=s.rate_burst, max_inflight=s.max_inflight, metrics=metrics,
                       inflight=inflight)
    app.add_middleware(BodySizeLimit, max_bytes=s.max_body_bytes, upload_bytes=s.max_upload_bytes)
    # Cross-origin use (the widget on someone's page) only for the origins listed in settings.
    app.add_middleware(CORSMiddleware, allow_origins=s.cors_origins, allow_credentials=False,
                       allow_methods=["GET", "POST", "PUT", "DELETE", "OPTIONS"],
                       allow_headers=["content-type", "authorization", "x-request-id", *CLIENT_HEADERS],
                       expose_headers=["x-request-id", "retry-after"], max_age=600)
    app.add_middleware(HostCheck, allowed_hosts=s.allowed_hosts, bind_host=s.host)
    app.add_middleware(RequestContext, metrics=metrics)
    app.add_middleware(ClientAddress, trusted_proxies=s.trusted_proxies)
    errors.document_errors(app)
    documented = app.openapi
    app.openapi = lambda: docs_assets.add_bearer_scheme(documented())
    return app
