"""Request ids, structured logs and Prometheus metrics.

Every response carries `X-Request-ID` (the client's, when it sends a sane one, else a new one);
log lines carry it too. Headers are never logged, so API keys never reach the logs.
"""
from __future__ import annotations

import contextvars
import json
import logging
import re
import time
import uuid

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from .proxies import PEER_KEY

# Label values come from a fixed set, so a client cannot add Prometheus series: unknown methods and
# paths that match no route are counted as "other".
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
STATIC_PATHS = frozenset({"/", "/widget.js"})

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
_SANE_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
access_log = logging.getLogger("rag.access")

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {"ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)), "level": record.levelname,
               "logger": record.name, "msg": record.getMessage(), "request_id": request_id_var.get()}
        out.update(getattr(record, "fields", {}))
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


def configure_logging(json_lines: bool, level: str = "INFO") -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if json_lines else logging.Formatter(
        "%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger("rag")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False


class Metrics:
    """One registry per app, so several apps (tests) never collide."""

    def __init__(self, pipeline):
        self.pipeline = pipeline
        self.registry = r = CollectorRegistry()
        self.requests = Counter("rag_http_requests", "HTTP requests by route, method and status",
                                ["route", "method", "status"], registry=r)
        self.latency = Histogram("rag_http_request_duration_seconds", "HTTP request latency", ["route"],
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.retrieval = Histogram("rag_retrieval_seconds", "Retrieval time per question", buckets=LATENCY_BUCKETS,
                                   registry=r)
        self.generation = Histogram("rag_generation_seconds", "Answer generation time", ["generator"],
                                    buckets=LATENCY_BUCKETS, registry=r)
        self.answers = Counter("rag_answers", "Answers by generator and abstention", ["generator", "abstained"],
                               registry=r)
        self.fallbacks = Counter("rag_generator_fallbacks", "Answers given by the fallback generator", ["failed"],
                                 registry=r)
        self.writes = Counter("rag_documents_written", "Document writes by outcome", ["outcome"], registry=r)
        self.rejected = Counter("rag_requests_rejected", "Requests refused by rate limiting or load shedding",
                                ["reason"], registry=r)
        r.register(_PipelineCollector(pipeline))

    def observe_answer(self, result) -> None:
        """Count an answer (a `rag.service.AskResult`)."""
        timings = result.timings_ms
        self.retrieval.observe(timings.get("retrieve", 0) / 1000)
        self.generation.labels(result.generator).observe(timings.get("generate", 0) / 1000)
        self.answers.labels(result.generator, str(result.abstained).lower()).inc()
        if result.fallback is not None:
            self.fallbacks.labels(result.fallback.from_).inc()


def journal_damage(pipeline) -> list:
    """Damaged journal records not yet dealt with by an operator (live journal and set-aside files)."""
    try:
        return pipeline.journal.damage()
    except OSError as exc:
        logging.getLogger("rag.server").error("cannot inspect the journal: %s", exc)
        return []


def journal_health(pipeline, *, shown: int = 20) -> dict:
    """For /readyz: how many journal records were found damaged (and skipped), and where."""
    damaged = journal_damage(pipeline)
    out: dict = {"journal_damaged": len(damaged)}
    if damaged:
        out["journal_damage"] = {
            "records": [d.to_dict() for d in damaged[:shown]],
            "set_aside": [p.name for p in pipeline.journal.set_aside()],
            "action": "these records were skipped; every other record was applied. Inspect the named files "
                      "in the index directory, re-send any write you miss, then remove the set-aside files.",
        }
    return out


def segment_health(pipeline) -> dict:
    """For /readyz: the index's segments, whether a merge is running, whether the background pass
    over every segment's checksums has finished (a start checks sizes only), and segments left out
    as damaged."""
    index, store = pipeline.index, pipeline.store
    out: dict = {"segments": len(index.segments), "merging": store.maintenance.merging,
                 "checksums_verified": store.maintenance.checksums_verified, "damaged_segments": len(index.damaged)}
    if index.damaged:
        out["segment_damage"] = {
            "segments": [{"name": n, "reason": r} for n, r, _ in index.damaged],
            "action": "these segments are left out of search. `rag check --repair` rebuilds them from their own "
                      "stored documents; if those are damaged too, `rag ingest --rebuild PATH...` from the originals.",
        }
    return out


class _PipelineCollector:
    """Index size and upstream health, read at scrape time."""

    def __init__(self, pipeline):
        self.pipeline = pipeline

    def collect(self):
        docs = GaugeMetricFamily("rag_index_documents", "Documents in the served index")
        chunks = GaugeMetricFamily("rag_index_chunks", "Chunks in the served index")
        if self.pipeline.ready:
            docs.add_metric([], self.pipeline.index.document_count)
            chunks.add_metric([], self.pipeline.index.chunk_count)
        segments = GaugeMetricFamily("rag_index_segments", "Segments of the served index")
        bad = GaugeMetricFamily("rag_index_damaged_segments", "Segments left out of search because they are damaged")
        merges = CounterMetricFamily("rag_index_merges", "Segment merges committed by this process")
        index = self.pipeline.index if self.pipeline.ready else None
        if index is not None and hasattr(index, "segments"):  # a cluster's coordinator reports shards instead
            segments.add_metric([], len(index.segments))
            bad.add_metric([], len(index.damaged))
            merges.add_metric([], self.pipeline.store.maintenance.merges)
        yield docs
        yield chunks
        yield segments
        yield bad
        yield merges
        damaged = GaugeMetricFamily("rag_journal_damaged_records",
                                    "Damaged journal records skipped on replay and not yet removed by an operator")
        damaged.add_metric([], len(journal_damage(self.pipeline)))
        yield damaged
        llm = self.pipeline.generator_if_made("openai")
        failures = CounterMetricFamily("rag_upstream_failures", "Failed calls to the LLM server", labels=["reason"])
        circuit = GaugeMetricFamily("rag_upstream_circuit_open", "1 while the LLM circuit breaker is open")
        if llm is not None:
            for reason, n in sorted(llm.failures.items()):
                failures.add_metric([reason], n)
            circuit.add_metric([], 0 if llm.breaker.state == "closed" else 1)
        yield failures
        yield circuit


def method_label(method: str) -> str:
    return method if method in METHODS else "other"


def route_label(scope) -> str:
    """The matched route's path template (a fixed set), "static", or "other"."""
    path = getattr(scope.get("route"), "path", None)
    if isinstance(path, str):
        return path
    return "static" if scope["path"] in STATIC_PATHS else "other"


class RequestContext:
    """ASGI middleware: request id, access log line and request metrics."""

    def __init__(self, app, metrics: Metrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        incoming = dict(scope.get("headers", [])).get(b"x-request-id", b"").decode("latin-1")
        rid = incoming if _SANE_ID.match(incoming) else uuid.uuid4().hex
        token = request_id_var.set(rid)
        started = time.perf_counter()
        status = {"code": 500}

        async def send_with_id(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                message = {**message, "headers": [*message.get("headers", []), (b"x-request-id", rid.encode())]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            label = route_label(scope)
            self.metrics.requests.labels(label, method_label(scope["method"]), str(status["code"])).inc()
            self.metrics.latency.labels(label).observe(elapsed)
            client = scope.get("client") or ("-", 0)
            fields = {"method": scope["method"][:16], "path": scope["path"], "status": status["code"],
                      "duration_ms": round(elapsed * 1000, 2), "client": client[0]}
            peer = scope.get(PEER_KEY)
            if peer and peer[0] != client[0]:  # forwarded by a trusted proxy: record the hop too
                fields["proxy"] = peer[0]
            access_log.info("%s %s %s", fields["method"], scope["path"], status["code"], extra={"fields": fields})
            request_id_var.reset(token)
