"""The app over a cluster: the existing FastAPI app (`server.app.create_app`) on a `ClusterPipeline`,
with `/readyz` and `/metrics` showing every shard and its replicas, and responses that drew on only
some shards flagged in headers (`X-RAG-Shards-Answered`, `X-RAG-Shards-Missing`)."""
from __future__ import annotations

from typing import Callable

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from prometheus_client.core import GaugeMetricFamily

from server.app import create_app

from .coordinator import ANSWERED, Answered, ClusterPipeline

Replicas = Callable[[], dict[int, dict]]  # shard -> {"node", "status", "replicas": {state: count}}


def shard_report(pipeline: ClusterPipeline, replicas: Replicas | None) -> tuple[bool, list[dict]]:
    """(every shard answers, one entry per shard: documents, chunks, or why it is down; its replicas)."""
    try:
        infos = pipeline.shard_infos(partial=True)
    except Exception:  # noqa: BLE001 - no shard answers at all: every one is reported down
        infos = {}
    placement = _safe(replicas)
    out = []
    for shard in range(len(pipeline.shards)):
        entry: dict = {"shard": shard, **placement.get(shard, {})}
        if shard in infos:
            entry.update(status="up", documents=infos[shard]["documents"], chunks=infos[shard]["chunks"])
        else:
            entry.update(status="down", reason=pipeline.shards.failures.get(shard, "no answer"))
        out.append(entry)
    return all(e["status"] == "up" for e in out), out


def _safe(replicas: Replicas | None) -> dict:
    try:
        return replicas() if replicas is not None else {}
    except Exception:  # noqa: BLE001 - the controller's view is extra detail, never a reason to fail
        return {}


class ShardFlags:
    """ASGI middleware: each request gets an `Answered` record; one that lacks shards says so."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        answered = Answered()
        token = ANSWERED.set(answered)

        async def flagged(message):
            if message["type"] == "http.response.start" and answered.missing:
                up = sorted(set(range(answered.shards)) - answered.missing)
                message = {**message, "headers": [*message.get("headers", []),
                                                  (b"x-rag-shards-answered", ",".join(map(str, up)).encode()),
                                                  (b"x-rag-shards-missing",
                                                   ",".join(map(str, sorted(answered.missing))).encode())]}
            await send(message)
        try:
            await self.app(scope, receive, flagged)
        finally:
            ANSWERED.reset(token)


class _ShardCollector:
    def __init__(self, pipeline: ClusterPipeline, replicas: Replicas | None):
        self.pipeline, self.replicas = pipeline, replicas

    def collect(self):
        _, shards = shard_report(self.pipeline, self.replicas)
        up = GaugeMetricFamily("rag_cluster_shard_up", "1 while the shard answers", labels=["shard"])
        docs = GaugeMetricFamily("rag_cluster_shard_documents", "Documents in the shard", labels=["shard"])
        reps = GaugeMetricFamily("rag_cluster_shard_replicas", "Serve replicas of the shard by state",
                                 labels=["shard", "state"])
        for s in shards:
            label = str(s["shard"])
            up.add_metric([label], 1 if s["status"] == "up" else 0)
            if "documents" in s:
                docs.add_metric([label], s["documents"])
            for state, n in s.get("replicas", {}).items():
                reps.add_metric([label, state], n)
        yield up
        yield docs
        yield reps


def create_cluster_app(pipeline: ClusterPipeline, *, replicas: Replicas | None = None,
                       load_in_background: bool = True) -> FastAPI:
    app = create_app(pipeline, load_in_background=load_in_background)

    async def readyz():
        ok, shards = await run_in_threadpool(shard_report, pipeline, replicas)
        body = {"status": "ready" if ok and pipeline.ready else ("degraded" if pipeline.ready else "loading"),
                "documents": sum(s.get("documents", 0) for s in shards),
                "chunks": sum(s.get("chunks", 0) for s in shards), "shards": shards}
        return JSONResponse(body, status_code=200 if ok and pipeline.ready else 503)

    # Ahead of the app's own /readyz, which knows one index only.
    app.router.routes.insert(0, APIRoute("/readyz", readyz, methods=["GET"], include_in_schema=False))
    app.state.metrics.registry.register(_ShardCollector(pipeline, replicas))
    app.add_middleware(ShardFlags)
    return app
