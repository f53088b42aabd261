"""Rate limiting, load shedding, metrics, request ids, and upstream retries / circuit breaker."""
from __future__ import annotations

import logging
import threading

import httpx

from support import PESKOV_SENTENCE_START


def test_rate_limit_answers_429_with_retry_after(make_seed_pipeline, serve_pipeline):
    pipeline = make_seed_pipeline(rate_limit=0.001, rate_burst=3)  # no refill within the test
    with serve_pipeline(pipeline) as client:
        codes = [client.post("/search", json={"query": "Peskov"}).status_code for _ in range(5)]
        limited = client.post("/search", json={"query": "Peskov"})
        health = client.get("/healthz")
        metrics = client.get("/metrics").text
    assert codes[:3] == [200, 200, 200] and codes[3:] == [429, 429]
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
    assert "rate limited" in limited.json()["detail"]
    assert health.status_code == 200, "health checks are never rate limited"
    assert 'rag_requests_rejected_total{reason="rate_limited"} 3.0' in metrics


def test_rate_limit_zero_turns_it_off(make_seed_pipeline, serve_pipeline):
    with serve_pipeline(make_seed_pipeline(rate_limit=0, rate_burst=1)) as client:
        assert {client.post("/search", json={"query": "Peskov"}).status_code for _ in range(10)} == {200}


def test_overload_is_shed_with_503(make_seed_pipeline, serve_pipeline, llm):
    llm.mode = "hold"
    pipeline = make_seed_pipeline(max_inflight=2, rate_limit=0, openai_base_url=llm.base_url,
                                  openai_model="stand-in", openai_timeout_s=10)
    with serve_pipeline(pipeline) as client:
        results: list[int] = []

        def slow_ask():
            r = httpx.post(str(client.base_url) + "/ask", json={"question": "What did Peskov say?",
                                                                "generator": "openai"}, timeout=30)
            results.append(r.status_code)

        workers = [threading.Thread(target=slow_ask) for _ in range(2)]
        for w in workers:
            w.start()
        while len(llm.requests) < 2:  # both slow requests are inside the server
            threading.Event().wait(0.02)
        shed = client.post("/search", json={"query": "Peskov"})
        llm.release.set()
        for w in workers:
            w.join()
        after = client.post("/search", json={"query": "Peskov"})
    assert shed.status_code == 503 and shed.headers["retry-after"] == "1"
    assert results == [200, 200] and after.status_code == 200


def test_metrics_and_request_ids(make_seed_pipeline, serve_pipeline):
    with serve_pipeline(make_seed_pipeline()) as client:
        r = client.post("/ask", json={"question": "What did Peskov say?"}, headers={"X-Request-ID": "abc-123"})
        assert r.headers["x-request-id"] == "abc-123"
        generated = client.post("/ask", json={"question": "What did Peskov say?"},
                                headers={"X-Request-ID": "bad id with spaces"}).headers["x-request-id"]
        assert generated != "bad id with spaces" and len(generated) == 32
        client.post("/ask", json={"question": ""})
        text = client.get("/metrics").text
    assert 'rag_http_requests_total{method="POST",route="/ask",status="200"} 2.0' in text
    assert 'rag_http_requests_total{method="POST",route="/ask",status="422"} 1.0' in text
    assert 'rag_answers_total{abstained="false",generator="extractive"} 2.0' in text
    assert "rag_retrieval_seconds_count 2.0" in text
    assert 'rag_http_request_duration_seconds_bucket{le="+Inf",route="/ask"} 3.0' in text
    assert "rag_index_documents 1.0" in text and "rag_index_chunks" in text


def test_upstream_503_is_retried_then_answers(make_seed_pipeline, serve_pipeline, llm):
    llm.fail_first = 2
    pipeline = make_seed_pipeline(openai_base_url=llm.base_url, openai_model="stand-in", openai_max_retries=2)
    with serve_pipeline(pipeline) as client:
        body = client.post("/ask", json={"question": "What did Peskov say?", "generator": "openai"}).json()
    assert len(llm.requests) == 3
    assert body["generator"] == "openai" and "fallback" not in body


def test_circuit_breaker_stops_calling_a_dead_server(make_seed_pipeline, serve_pipeline, llm):
    llm.mode = "error"
    pipeline = make_seed_pipeline(openai_base_url=llm.base_url, openai_model="stand-in", openai_max_retries=0,
                                  openai_breaker_threshold=2, openai_breaker_cooldown_s=600)
    with serve_pipeline(pipeline) as client:
        bodies = [client.post("/ask", json={"question": "What did Peskov say?", "generator": "openai"}).json()
                  for _ in range(4)]
        metrics = client.get("/metrics").text
    assert len(llm.requests) == 2, "after two failures the breaker opens and the server is not called"
    assert all(b["generator"] == "extractive" and b["fallback"]["from"] == "openai" for b in bodies)
    assert "not calling it" in bodies[-1]["fallback"]["reason"]
    assert bodies[-1]["citations"][0]["text"].startswith(PESKOV_SENTENCE_START)
    assert 'rag_upstream_failures_total{reason="http_500"} 2.0' in metrics
    assert 'rag_upstream_failures_total{reason="circuit_open"} 2.0' in metrics
    assert "rag_upstream_circuit_open 1.0" in metrics
    assert 'rag_generator_fallbacks_total{failed="openai"} 4.0' in metrics


def test_dead_upstream_with_fallback_off_is_a_clear_502(make_seed_pipeline, serve_pipeline):
    pipeline = make_seed_pipeline(openai_base_url="http://127.0.0.1:9/v1", openai_model="x", openai_fallback=False,
                                  openai_max_retries=1)
    with serve_pipeline(pipeline) as client:
        r = client.post("/ask", json={"question": "What did Peskov say?", "generator": "openai"})
        assert client.get("/healthz").status_code == 200
    assert r.status_code == 502 and "unreachable" in r.json()["detail"]


def test_keys_never_reach_the_logs(tmp_pipeline, serve_pipeline, caplog):
    pipeline = tmp_pipeline(api_keys=["s3cret-key-123"])
    pipeline.load()
    with caplog.at_level(logging.DEBUG):
        with serve_pipeline(pipeline) as client:
            client.post("/documents", json={"text": "A note."}, headers={"Authorization": "Bearer s3cret-key-123"})
            client.post("/documents", json={"text": "A note."}, headers={"Authorization": "Bearer wrong-key"})
    logged = "\n".join(r.getMessage() + str(getattr(r, "fields", "")) for r in caplog.records)
    assert "rag.access" in {r.name for r in caplog.records}
    assert "s3cret-key-123" not in logged and "wrong-key" not in logged
