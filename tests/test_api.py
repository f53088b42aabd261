"""The HTTP API over a real uvicorn server on loopback: health, readiness, /ask, /search, errors."""
from __future__ import annotations

import json

import pytest

from support import (OFF_TOPIC, PESKOV_SENTENCE_START, SEED_FILE, check_answer_contract, check_passage,
                     markers, wait_ready)

# The contract's fields plus `query` (the standalone retrieval query, an extension for multi-turn).
ASK_KEYS = {"query", "answer", "abstained", "generator", "citations", "segments", "passages", "timings_ms"}
CITATION_KEYS = {"id", "chunk_id", "document_id", "source", "title", "text", "start", "end", "score"}
PASSAGE_KEYS = {"chunk_id", "document_id", "source", "title", "text", "start", "end", "score", "rank"}


def test_healthz(api):
    r = api.get("/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok"}


def test_readyz_reports_the_loaded_index(api, seed_pipeline):
    r = api.get("/readyz")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ready"
    assert body["documents"] == 1 and body["chunks"] == len(seed_pipeline.index.chunks)


def test_ask_response_has_the_contract_shape(api, seed_pipeline):
    r = api.post("/ask", json={"question": "What role has Keir Starmer said the UK is ready to play?"})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert set(body) == ASK_KEYS
    assert body["generator"] == "extractive" and body["abstained"] is False
    assert "leading role" in body["answer"]
    assert len(body["passages"]) == 5  # top_k defaults to 5
    assert [p["rank"] for p in body["passages"]] == [1, 2, 3, 4, 5]
    for p in body["passages"]:
        assert set(p) == PASSAGE_KEYS
        check_passage(p, seed_pipeline)
    for c in body["citations"]:
        assert set(c) == CITATION_KEYS
        assert isinstance(c["score"], float) and c["source"].endswith(SEED_FILE)
    check_answer_contract(body, seed_pipeline)
    assert set(body["timings_ms"]) == {"retrieve", "generate", "total"}
    assert all(isinstance(v, (int, float)) and v >= 0 for v in body["timings_ms"].values())


def test_ask_honours_top_k_mode_and_filters(api, seed_pipeline):
    r = api.post("/ask", json={"question": "Hegseth Poland airbase", "top_k": 2, "mode": "lexical",
                               "filters": {"source": "*" + SEED_FILE}})
    assert r.status_code == 200
    body = r.json()
    assert len(body["passages"]) == 2
    check_answer_contract(body, seed_pipeline)
    r = api.post("/ask", json={"question": "Hegseth Poland airbase", "filters": {"source": "nowhere/*"}})
    assert r.status_code == 200 and r.json()["passages"] == [] and r.json()["abstained"] is True


def test_ask_off_topic_abstains(api):
    body = api.post("/ask", json={"question": OFF_TOPIC}).json()
    assert body["abstained"] is True and body["citations"] == [] and markers(body["answer"]) == []


def test_end_to_end_peskov_answer_cites_the_sentence_with_exact_offsets(api, seed_pipeline):
    r = api.post("/ask", json={"question": "What did Peskov say?"})
    assert r.status_code == 200
    body = r.json()
    assert body["abstained"] is False, "the seed article says what Peskov did: it rejected the plan"
    check_answer_contract(body, seed_pipeline)
    cited = [c for c in body["citations"] if "Peskov" in c["text"]]
    assert cited, body["answer"]
    c = cited[0]
    text = seed_pipeline.index.document(c["document_id"]).text
    assert text[c["start"]:c["end"]] == c["text"]
    assert c["text"].startswith(PESKOV_SENTENCE_START)
    assert f"[{c['id']}]" in body["answer"]


def test_search_shape_and_top_k(api, seed_pipeline):
    r = api.post("/search", json={"query": "what did Peskov say", "top_k": 3})
    assert r.status_code == 200
    body = r.json()
    assert set(body) == {"passages"}
    assert [p["rank"] for p in body["passages"]] == [1, 2, 3]
    for p in body["passages"]:
        assert set(p) == PASSAGE_KEYS
        check_passage(p, seed_pipeline)
    assert any("Peskov" in p["text"] for p in body["passages"])
    assert len(api.post("/search", json={"query": "Ukraine", "top_k": 50}).json()["passages"]) == \
        len(seed_pipeline.index.chunks)


# -- errors ----------------------------------------------------------------------------
BAD_ASKS = [
    pytest.param({"question": ""}, 422, id="empty-question"),
    pytest.param({"question": "   \n\t"}, 422, id="blank-question"),
    pytest.param({}, 422, id="missing-question"),
    pytest.param({"question": 123}, 422, id="question-int"),
    pytest.param({"question": None}, 422, id="question-null"),
    pytest.param({"question": ["a"]}, 422, id="question-list"),
    pytest.param({"question": "Peskov?", "top_k": "x"}, 422, id="top_k-string"),
    pytest.param({"question": "Peskov?", "top_k": "5"}, 422, id="top_k-numeric-string"),
    pytest.param({"question": "Peskov?", "top_k": 2.5}, 422, id="top_k-float"),
    pytest.param({"question": "Peskov?", "top_k": True}, 422, id="top_k-bool"),
    pytest.param({"question": "Peskov?", "top_k": 0}, 422, id="top_k-0"),
    pytest.param({"question": "Peskov?", "top_k": -1}, 422, id="top_k-negative"),
    pytest.param({"question": "Peskov?", "top_k": 51}, 422, id="top_k-51"),
    pytest.param({"question": "Peskov?", "generator": "gpt-9"}, 422, id="unknown-generator"),
    pytest.param({"question": "Peskov?", "generator": 7}, 422, id="generator-int"),
    pytest.param({"question": "Peskov?", "colour": "blue"}, 422, id="unknown-field"),
    pytest.param({"question": "Peskov?", "filters": "seeds/*"}, 422, id="filters-string"),
    pytest.param({"question": "Peskov?", "filters": {"author": "x"}}, 422, id="filters-unknown-key"),
    pytest.param({"question": "Peskov?", "filters": {"source": []}}, 422, id="filters-empty-list"),
    pytest.param({"question": "Peskov?", "mode": "psychic"}, 422, id="unknown-mode"),
    pytest.param({"question": "x" * 2001}, 413, id="question-over-max-chars"),
]


@pytest.mark.parametrize("payload,status", BAD_ASKS)
def test_bad_ask_requests_get_a_clear_4xx(api, payload, status):
    r = api.post("/ask", json=payload)
    assert r.status_code == status, r.text
    body = r.json()
    assert isinstance(body.get("detail"), str) and body["detail"].strip()


def test_error_messages_name_the_problem(api):
    assert "top_k" in api.post("/ask", json={"question": "q", "top_k": 0}).json()["detail"]
    assert "gpt-9" in api.post("/ask", json={"question": "q", "generator": "gpt-9"}).json()["detail"]
    assert "colour" in api.post("/ask", json={"question": "q", "colour": 1}).json()["detail"]
    assert "2000" in api.post("/ask", json={"question": "x" * 2001}).json()["detail"]


BAD_SEARCHES = [
    pytest.param({"query": ""}, 422, id="empty-query"),
    pytest.param({"query": 5}, 422, id="query-int"),
    pytest.param({"question": "Peskov"}, 422, id="wrong-field-name"),
    pytest.param({"query": "Peskov", "top_k": 0}, 422, id="top_k-0"),
    pytest.param({"query": "Peskov", "top_k": 51}, 422, id="top_k-51"),
    pytest.param({"query": "x" * 2001}, 413, id="query-over-max-chars"),
]


@pytest.mark.parametrize("payload,status", BAD_SEARCHES)
def test_bad_search_requests_get_a_clear_4xx(api, payload, status):
    r = api.post("/search", json=payload)
    assert r.status_code == status, r.text
    assert isinstance(r.json().get("detail"), str)


@pytest.mark.parametrize("raw", [b"{not json", b"", b"[1, 2]", b'"just a string"', b"\xff\xfe\x00garbage"])
def test_malformed_json_is_422(api, raw):
    r = api.post("/ask", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    assert isinstance(r.json().get("detail"), str)


def test_body_over_max_body_bytes_is_413(api, seed_pipeline):
    limit = seed_pipeline.settings.max_body_bytes
    payload = json.dumps({"question": "q", "filters": {"source": ["x" * 100] * (limit // 100 + 10)}}).encode()
    r = api.post("/ask", content=payload, headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert "limit" in r.json()["detail"]


def test_streamed_body_over_max_body_bytes_is_413(api, seed_pipeline):
    """A chunked upload (no Content-Length) over the limit is refused with 413, not a 500."""
    limit = seed_pipeline.settings.max_body_bytes
    payload = json.dumps({"question": "q" + " " * (limit + 1000)}).encode()

    def chunks():
        for i in range(0, len(payload), 8192):
            yield payload[i:i + 8192]

    r = api.post("/ask", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413, r.text
    assert isinstance(r.json().get("detail"), str)


def test_server_still_answers_after_bad_requests(api, seed_pipeline):
    for payload, _ in [(p.values[0], p.values[1]) for p in BAD_ASKS]:
        api.post("/ask", json=payload)
    api.post("/ask", content=b"{nope", headers={"content-type": "application/json"})
    assert api.get("/healthz").status_code == 200
    r = api.post("/ask", json={"question": "On what date did Hegseth visit the airbase in Poland?"})
    assert r.status_code == 200
    body = r.json()
    assert "February 15, 2025" in body["answer"]
    check_answer_contract(body, seed_pipeline)


def test_unknown_route_and_wrong_method(api):
    assert api.get("/nope").status_code == 404
    assert api.get("/ask").status_code == 405


# -- readiness while the index cannot be served ------------------------------------------
def test_readyz_is_503_and_ask_is_503_when_the_index_cannot_load(tmp_path, tmp_pipeline, serve_pipeline):
    index_dir = tmp_path / "broken" / "index"
    index_dir.mkdir(parents=True)
    (index_dir / "CURRENT").write_text("manifest-missing.json")
    pipeline = tmp_pipeline(tmp_path / "broken")
    with serve_pipeline(pipeline, ready=False) as client:
        assert client.get("/healthz").status_code == 200
        r = client.get("/readyz")
        assert r.status_code == 503
        assert "manifest-missing.json" in r.json()["detail"]
        r = client.post("/ask", json={"question": "What did Peskov say?"})
        assert r.status_code == 503 and isinstance(r.json()["detail"], str)


def test_server_builds_the_seed_index_when_none_exists(tmp_path, tmp_pipeline, serve_pipeline):
    pipeline = tmp_pipeline(tmp_path / "fresh")
    with serve_pipeline(pipeline) as client:
        ready = wait_ready(client)
        assert ready["documents"] == 1
        r = client.post("/search", json={"query": "Macron", "top_k": 1})
        assert r.status_code == 200 and "Macron" in r.json()["passages"][0]["text"]
