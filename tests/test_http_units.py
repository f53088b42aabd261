"""The HTTP layer's parts on their own (fast tier): the error tree's statuses, the statuses each
operation declares, rate limiting and load shedding, body limits, metrics."""
from __future__ import annotations

import asyncio

import httpx
import pytest
from prometheus_client import generate_latest

import rag.errors as E
from rag.generation import Citation
from rag.service import AskResult
from server.app import create_app
from server.errors import status_for
from server.guard import Guard
from server.limits import BodySizeLimit
from server.observability import Metrics


@pytest.mark.parametrize("exc, status", [
    (E.InvalidInputError("x"), 422), (E.UnknownGeneratorError("g", ["extractive"]), 422),
    (E.DocumentError("x"), 422), (E.InputTooLargeError("x"), 413), (E.NotFoundError("x"), 404),
    (E.DocumentNotFoundError("x"), 404), (E.UnsupportedMediaError("x"), 415), (E.UnauthorizedError("x"), 401),
    (E.ForbiddenError("x"), 403), (E.NotReadyError("x"), 503), (E.IndexCorruptError("x"), 503),
    (E.IndexMismatchError("x"), 503), (E.StorageError("x"), 503), (E.DiskFullError("x"), 507),
    (E.GeneratorError("x"), 502), (E.UpstreamConnectError("x"), 502), (E.UpstreamStatusError("x", 500), 502),
    (E.UpstreamTimeoutError("x"), 504), (E.CircuitOpenError("x"), 503), (E.RagError("x"), 500),
])
def test_each_kind_of_failure_has_its_status(exc, status):
    assert status_for(exc) == status


def test_not_found_is_not_a_kind_of_invalid_input():
    assert not issubclass(E.NotFoundError, E.InvalidInputError)


def test_each_operation_declares_the_statuses_it_can_return(fake_pipeline):
    spec = create_app(fake_pipeline()).openapi()

    def codes(path, method):
        return {int(c) for c in spec["paths"][path][method]["responses"] if int(c) >= 400}

    assert {502, 504} <= codes("/ask", "post") and not {502, 504, 507} & codes("/search", "post")
    assert 507 in codes("/documents", "post") and 507 not in codes("/documents", "get")
    assert 404 in codes("/documents/{doc_id}", "delete") and 404 not in codes("/search", "post")
    assert codes("/healthz", "get") == set()
    error = spec["paths"]["/ask"]["post"]["responses"]["422"]["content"]["application/json"]["schema"]
    assert error["$ref"].endswith("/ErrorBody")


async def _ok(scope, receive, send):
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": str(len(body)).encode()})


def _client(app) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1")


def test_rate_limit_answers_429_with_retry_after_per_client():
    now = [0.0]

    async def go():
        async with _client(Guard(_ok, rate=1.0, burst=3, max_inflight=10, clock=lambda: now[0])) as c:
            statuses = [(await c.post("/ask", content=b"{}")).status_code for _ in range(4)]
            refused = await c.post("/search", content=b"{}")
            other_route = await c.get("/healthz")  # not an API route: never limited
            now[0] += 1.0  # one token back
            refilled = [(await c.post("/ask", content=b"{}")).status_code for _ in range(2)]
            return statuses, refused, other_route, refilled

    statuses, refused, other_route, refilled = asyncio.run(go())
    assert statuses == [200, 200, 200, 429]
    assert refused.status_code == 429 and refused.headers["retry-after"] == "1"
    assert other_route.status_code == 200
    assert refilled == [200, 429]


def test_load_shedding_answers_503_when_every_slot_is_taken():
    gate = asyncio.Event()

    async def slow(scope, receive, send):
        await gate.wait()
        await _ok(scope, receive, send)

    async def go():
        async with _client(Guard(slow, rate=0, burst=1, max_inflight=2)) as c:
            held = [asyncio.create_task(c.post("/ask", content=b"{}")) for _ in range(2)]
            await asyncio.sleep(0.05)
            shed = await c.post("/ask", content=b"{}")
            gate.set()
            return shed, [(await t).status_code for t in held]

    shed, held = asyncio.run(go())
    assert shed.status_code == 503 and shed.headers["retry-after"] == "1"
    assert held == [200, 200]


def test_body_limits_refuse_declared_streamed_and_slow_bodies():
    async def chunks(n):
        for _ in range(n):
            yield b"x" * 100

    async def go():
        app = BodySizeLimit(_ok, max_bytes=1000, upload_bytes=5000, read_timeout_s=0.2)
        async with _client(app) as c:
            small = await c.post("/ask", content=b"x" * 1000)
            declared = await c.post("/ask", content=b"x" * 1001)
            streamed = await c.post("/ask", content=chunks(11))  # chunked: no Content-Length
            upload = await c.post("/documents", content=b"x" * 4000)

            async def never_done():
                yield b"x"
                await asyncio.sleep(5)
                yield b"x"

            slow = await c.post("/ask", content=never_done())
            return small, declared, streamed, upload, slow

    small, declared, streamed, upload, slow = asyncio.run(go())
    assert (small.status_code, small.text) == (200, "1000")  # replayed to the app whole
    assert declared.status_code == 413 and "1000 byte limit" in declared.json()["detail"]
    assert streamed.status_code == 413
    assert (upload.status_code, upload.text) == (200, "4000")
    assert slow.status_code == 408


def test_metrics_count_answers_by_generator_and_fallback(fake_pipeline):
    metrics = Metrics(fake_pipeline())
    citation = Citation(id=1, chunk_id="d:0", document_id="d", source="s", title="t", text="x", start=0, end=1,
                        score=0.5)
    metrics.observe_answer(AskResult(query="q", answer="x [1]", abstained=False, generator="extractive",
                                     citations=[citation], passages=[], timings_ms={"retrieve": 2.0, "generate": 1.0},
                                     fallback={"from": "openai", "reason": "ConnectError"}))
    text = generate_latest(metrics.registry).decode()
    assert 'rag_answers_total{abstained="false",generator="extractive"} 1.0' in text
    assert 'rag_generator_fallbacks_total{failed="openai"} 1.0' in text


def test_a_too_large_document_is_413_though_it_is_also_a_loader_error():
    from rag.loaders import DocumentTooLargeError

    assert status_for(DocumentTooLargeError("x")) == 413
