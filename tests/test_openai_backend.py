"""The OpenAI-compatible generator against a chat-completions stand-in on loopback (real HTTP)."""
from __future__ import annotations

import pytest

from rag.errors import UpstreamError, UpstreamTimeoutError

from support import PESKOV_SENTENCE_START, check_answer_contract, markers

QUESTION = "What did Peskov say?"
ANSWERABLE = "What role has Keir Starmer said the UK is ready to play?"


@pytest.fixture
def openai_pipeline(make_seed_pipeline, llm):
    def make(**overrides):
        settings = {"openai_base_url": llm.base_url, "openai_model": "stand-in-model-7b",
                    "openai_timeout_s": 0.5, "openai_fallback": True}
        settings.update(overrides)
        return make_seed_pipeline(**settings)

    return make


def test_normal_answer_renumbers_markers_by_first_use(openai_pipeline, llm):
    pipeline = openai_pipeline()
    llm.reply = "Russia rejected the plan [S2]. Peskov and Lavrov both expressed disapproval [S1][S2]."
    result = pipeline.ask(QUESTION, 5, generator="openai")
    body = result.model_dump(mode="json", exclude_none=True)
    assert body["generator"] == "openai" and body["abstained"] is False
    assert "fallback" not in body
    assert body["answer"] == "Russia rejected the plan [1]. Peskov and Lavrov both expressed disapproval [2][1]."
    passages = result.passages
    assert [c["chunk_id"] for c in body["citations"]] == [passages[1].chunk_id, passages[0].chunk_id]
    for c, p in zip(body["citations"], [passages[1], passages[0]]):
        # The quote is the passage's sentence(s) that support the claim, not the whole ~1000-char chunk.
        assert p.start <= c["start"] < c["end"] <= p.end and c["text"] == p.text[c["start"] - p.start:c["end"] - p.start]
        assert c["document_id"] == p.document_id and c["source"] == p.source
    check_answer_contract(body, pipeline)


def test_an_llm_citation_quotes_the_sentence_that_supports_the_claim(openai_pipeline, llm, seed_doc):
    pipeline = openai_pipeline()
    passages = pipeline.search(QUESTION, 5)
    (peskov,) = [p for p in passages if "Dmitry Peskov" in p.text][:1]
    label = passages.index(peskov) + 1
    llm.reply = f"Peskov and Lavrov both expressed disapproval of the idea [S{label}]."
    body = pipeline.ask(QUESTION, 5, generator="openai").model_dump(mode="json", exclude_none=True)
    (c,) = body["citations"]
    assert c["text"].startswith(PESKOV_SENTENCE_START) and len(c["text"]) < len(peskov.text) / 2
    assert seed_doc.text[c["start"]:c["end"]] == c["text"]


def test_stand_in_receives_the_passages_the_question_and_the_model(openai_pipeline, llm):
    pipeline = openai_pipeline(openai_api_key="sk-test-123")
    result = pipeline.ask(QUESTION, 3, generator="openai")
    assert len(llm.requests) == 1
    request = llm.requests[0]
    body = request["body"]
    assert body["model"] == "stand-in-model-7b"
    assert body["stream"] is False
    assert request["headers"]["authorization"] == "Bearer sk-test-123"
    assert request["headers"]["content-type"].startswith("application/json")
    messages = body["messages"]
    assert [m["role"] for m in messages] == ["system", "user"]
    prompt = messages[-1]["content"]
    assert QUESTION in prompt
    for i, p in enumerate(result.passages, start=1):
        assert f"[S{i}]" in prompt
        assert p.text in prompt
    assert prompt.index(result.passages[0].text) < prompt.index(result.passages[1].text)
    assert "[S1]" in messages[0]["content"]  # the system prompt asks for [Sn] citations


def test_bad_marker_is_dropped(openai_pipeline, llm):
    pipeline = openai_pipeline()
    llm.reply = "Peskov objected [S9]. Russia rejected the idea [S1]. Also [S2, S9]."
    body = pipeline.ask(QUESTION, 5, generator="openai").model_dump(mode="json", exclude_none=True)
    assert "[9]" not in body["answer"] and "9" not in "".join(str(m) for m in markers(body["answer"]))
    assert body["answer"] == "Peskov objected. Russia rejected the idea [1]. Also [2]."
    assert len(body["citations"]) == 2
    check_answer_contract(body, pipeline)


def test_reply_citing_nothing_valid_abstains(openai_pipeline, llm):
    pipeline = openai_pipeline()
    for reply in ("Peskov objected [S9].", "Peskov objected [1].", "Peskov objected.", "I don't know based on the documents."):
        llm.reply = reply
        body = pipeline.ask(QUESTION, 5, generator="openai").model_dump(mode="json", exclude_none=True)
        assert body["abstained"] is True and body["citations"] == [], reply
        check_answer_contract(body, pipeline)


def test_timeout_falls_back_to_extractive(openai_pipeline, llm):
    pipeline = openai_pipeline(openai_fallback=True)
    llm.mode, llm.delay = "slow", 3.0
    body = pipeline.ask(ANSWERABLE, 5, generator="openai").model_dump(mode="json", exclude_none=True)
    assert body["generator"] == "extractive"
    assert body["fallback"]["from"] == "openai"
    assert "timed out" in body["fallback"]["reason"]
    assert "leading role" in body["answer"]
    check_answer_contract(body, pipeline)


def test_timeout_without_fallback_raises(openai_pipeline, llm):
    pipeline = openai_pipeline(openai_fallback=False)
    llm.mode, llm.delay = "slow", 3.0
    with pytest.raises(UpstreamError) as info:
        pipeline.ask(ANSWERABLE, 5, generator="openai")
    assert isinstance(info.value, UpstreamTimeoutError)


@pytest.mark.parametrize("mode", ["error", "garbage"])
def test_upstream_failure_falls_back(openai_pipeline, llm, mode):
    pipeline = openai_pipeline(openai_fallback=True)
    llm.mode = mode
    body = pipeline.ask(ANSWERABLE, 5, generator="openai").model_dump(mode="json", exclude_none=True)
    assert body["generator"] == "extractive" and body["fallback"]["from"] == "openai"
    if mode == "error":
        assert "500" in body["fallback"]["reason"]
    check_answer_contract(body, pipeline)


def test_unreachable_server_falls_back(openai_pipeline):
    pipeline = openai_pipeline(openai_base_url="http://127.0.0.1:9/v1", openai_fallback=True)
    body = pipeline.ask(ANSWERABLE, 5, generator="openai").model_dump(mode="json", exclude_none=True)
    assert body["fallback"]["from"] == "openai" and "unreachable" in body["fallback"]["reason"]


# -- over the API ------------------------------------------------------------------------
def test_api_openai_answer(openai_pipeline, llm, serve_pipeline):
    pipeline = openai_pipeline()
    llm.reply = "Kremlin spokesman Peskov rejected the plan [S3]."
    with serve_pipeline(pipeline) as client:
        r = client.post("/ask", json={"question": QUESTION, "generator": "openai", "top_k": 4})
        assert r.status_code == 200
        body = r.json()
        assert body["generator"] == "openai" and "fallback" not in body
        assert body["answer"] == "Kremlin spokesman Peskov rejected the plan [1]."
        assert body["citations"][0]["chunk_id"] == body["passages"][2]["chunk_id"]
        check_answer_contract(body, pipeline)


def test_api_timeout_with_fallback_is_extractive_with_fallback_field(openai_pipeline, llm, serve_pipeline):
    pipeline = openai_pipeline(openai_fallback=True)
    llm.mode, llm.delay = "slow", 3.0
    with serve_pipeline(pipeline) as client:
        r = client.post("/ask", json={"question": ANSWERABLE, "generator": "openai"})
        assert r.status_code == 200
        body = r.json()
        assert body["generator"] == "extractive"
        assert body["fallback"]["from"] == "openai" and "timed out" in body["fallback"]["reason"]
        check_answer_contract(body, pipeline)


def test_api_timeout_without_fallback_is_504(openai_pipeline, llm, serve_pipeline):
    pipeline = openai_pipeline(openai_fallback=False)
    llm.mode, llm.delay = "slow", 3.0
    with serve_pipeline(pipeline) as client:
        r = client.post("/ask", json={"question": ANSWERABLE, "generator": "openai"})
        assert r.status_code == 504
        assert "timed out" in r.json()["detail"]
        assert client.get("/healthz").status_code == 200


def test_api_upstream_500_without_fallback_is_502(openai_pipeline, llm, serve_pipeline):
    pipeline = openai_pipeline(openai_fallback=False)
    llm.mode = "error"
    with serve_pipeline(pipeline) as client:
        r = client.post("/ask", json={"question": ANSWERABLE, "generator": "openai"})
        assert r.status_code == 502
        assert "500" in r.json()["detail"]
        # The extractive default is unaffected.
        r = client.post("/ask", json={"question": ANSWERABLE})
        assert r.status_code == 200 and r.json()["generator"] == "extractive"


def test_api_upstream_500_with_fallback(openai_pipeline, llm, serve_pipeline):
    pipeline = openai_pipeline(openai_fallback=True)
    llm.mode = "error"
    with serve_pipeline(pipeline) as client:
        r = client.post("/ask", json={"question": ANSWERABLE, "generator": "openai"})
        assert r.status_code == 200
        body = r.json()
        assert body["generator"] == "extractive" and body["fallback"]["from"] == "openai"
        assert "leading role" in body["answer"]
