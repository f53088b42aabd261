"""Streaming answers (SSE), multi-turn follow-ups, the OpenAI-compatible endpoint with the official
`openai` client, and CORS: all against real servers on loopback."""
from __future__ import annotations

import json
import time

import httpx
import openai
import pytest

from support import OFF_TOPIC, PESKOV_SENTENCE_START, check_answer_contract


def read_events(response: httpx.Response) -> list[tuple[str, dict]]:
    events, name, data = [], None, []
    for line in response.iter_lines():
        if line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())
        elif line == "" and data:
            events.append((name, json.loads("\n".join(data))))
            name, data = None, []
    return events


def stream_ask(client: httpx.Client, body: dict) -> tuple[httpx.Response, list[tuple[str, dict]]]:
    with client.stream("POST", "/ask", json={**body, "stream": True}) as r:
        return r, read_events(r) if r.status_code == 200 else []


# -- streaming -------------------------------------------------------------------------------
def test_extractive_stream_sends_passages_then_pieces_then_citations(api, seed_pipeline):
    r, events = stream_ask(api, {"question": "What did Peskov say?"})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    assert r.headers["cache-control"] == "no-cache" and r.headers["x-accel-buffering"] == "no"
    names = [n for n, _ in events]
    assert names[0] == "passages" and names[-2:] == ["citations", "done"]
    assert set(names[1:-2]) == {"delta"} and len(names) - 3 > 3, "the answer arrives in several pieces"
    final = events[-2][1]
    assert "".join(d["text"] for n, d in events if n == "delta") == final["answer"]
    assert final["citations"] and final["citations"][0]["text"].startswith(PESKOV_SENTENCE_START)
    check_answer_contract(final, seed_pipeline)
    assert len(events[0][1]["passages"]) == 5
    assert set(events[-1][1]["timings_ms"]) == {"retrieve", "generate", "total"}


def test_stream_errors_before_streaming_are_plain_4xx(api):
    r, _ = stream_ask(api, {"question": "  "})
    assert r.status_code == 422
    r, _ = stream_ask(api, {"question": "q", "generator": "nope"})
    assert r.status_code == 422


def test_openai_stream_relays_upstream_tokens_with_renumbered_markers(make_seed_pipeline, serve_pipeline, llm):
    pipeline = make_seed_pipeline(openai_base_url=llm.base_url, openai_model="stand-in")
    with serve_pipeline(pipeline) as client:
        r, events = stream_ask(client, {"question": "What did Peskov say?", "generator": "openai"})
    deltas = [d["text"] for n, d in events if n == "delta"]
    assert len(deltas) >= llm.tokens_sent - 1 > 5, "tokens are relayed as they come, not as one block"
    final = events[-2][1]
    # Stand-in cites passages [S2] then [S1][S2]: renumbered by first use to [1], then [2][1].
    assert final["answer"] == "".join(deltas).strip()
    assert final["answer"] == "Russia rejected the plan [1]. Peskov and Lavrov both expressed disapproval [2][1]."
    assert final["generator"] == "openai" and len(final["citations"]) == 2
    assert llm.requests[-1]["body"]["stream"] is True


def test_client_leaving_mid_stream_stops_the_upstream_stream(make_seed_pipeline, serve_pipeline, llm):
    llm.reply = " ".join(f"word{i} [S1]" for i in range(400))
    llm.token_delay = 0.02
    pipeline = make_seed_pipeline(openai_base_url=llm.base_url, openai_model="stand-in")
    with serve_pipeline(pipeline) as client:
        with client.stream("POST", "/ask", json={"question": "What did Peskov say?", "generator": "openai",
                                                 "stream": True}) as r:
            deltas = 0
            for line in r.iter_lines():
                if line.startswith("event: delta"):
                    deltas += 1
                    if deltas == 3:
                        break  # the client goes away
        deadline = time.monotonic() + 20
        while not llm.stream_abandoned and time.monotonic() < deadline:
            time.sleep(0.05)
    assert llm.stream_abandoned, "the upstream stream was not closed when the client left"
    assert not llm.stream_finished and llm.tokens_sent < 400


def test_openai_failure_before_first_token_falls_back_in_the_stream(make_seed_pipeline, serve_pipeline, llm):
    llm.mode = "error"
    pipeline = make_seed_pipeline(openai_base_url=llm.base_url, openai_model="stand-in")
    with serve_pipeline(pipeline) as client:
        _, events = stream_ask(client, {"question": "What did Peskov say?", "generator": "openai"})
    final = dict(events)["citations"]
    assert final["generator"] == "extractive" and final["fallback"]["from"] == "openai"
    assert "500" in final["fallback"]["reason"]


# -- multi-turn ------------------------------------------------------------------------------
def test_follow_up_is_rewritten_with_the_previous_question(api, seed_pipeline):
    history = [{"role": "user", "content": "What is the Anglo-French peacekeeping plan?"},
               {"role": "assistant", "content": "A plan to deploy troops [1]."}]
    r = api.post("/ask", json={"question": "How many troops?", "history": history})
    body = r.json()
    assert r.status_code == 200
    assert body["query"] != "How many troops?" and "Anglo-French" in body["query"]
    assert "30,000" in body["answer"]
    check_answer_contract(body, seed_pipeline)


def test_and_what_did_lavrov_say(api, seed_pipeline):
    history = [{"role": "user", "content": "What did Peskov say about the plan?"},
               {"role": "assistant", "content": "He expressed disapproval [1]."}]
    body = api.post("/ask", json={"question": "and what did Lavrov say?", "history": history}).json()
    assert not body["abstained"]
    assert any("Lavrov" in c["text"] for c in body["citations"])
    check_answer_contract(body, seed_pipeline)


def test_standalone_question_is_not_rewritten(api):
    history = [{"role": "user", "content": "What is the Anglo-French peacekeeping plan?"}]
    body = api.post("/ask", json={"question": "Who is Keith Kellogg?", "history": history}).json()
    assert body["query"] == "Who is Keith Kellogg?"


def test_llm_rewrites_follow_ups_when_configured(make_seed_pipeline, serve_pipeline, llm):
    llm.rewrite_reply = "What did Sergei Lavrov say about the Anglo-French plan?"
    pipeline = make_seed_pipeline(openai_base_url=llm.base_url, openai_model="stand-in")
    history = [{"role": "user", "content": "What did Peskov say?"}, {"role": "assistant", "content": "No [1]."}]
    with serve_pipeline(pipeline) as client:
        body = client.post("/ask", json={"question": "and Lavrov?", "history": history,
                                         "generator": "openai"}).json()
    assert body["query"] == llm.rewrite_reply
    rewrite_request = llm.requests[0]["body"]["messages"]
    assert rewrite_request[0]["content"].startswith("Rewrite")
    assert [m["content"] for m in rewrite_request[1:]] == ["What did Peskov say?", "No [1].", "and Lavrov?"]


def test_history_is_validated(api):
    r = api.post("/ask", json={"question": "q?", "history": [{"role": "wizard", "content": "x"}]})
    assert r.status_code == 422
    r = api.post("/ask", json={"question": "q?", "history": "not a list"})
    assert r.status_code == 422


# -- OpenAI-compatible endpoint with the official client --------------------------------------
@pytest.fixture
def oai(api) -> openai.OpenAI:
    return openai.OpenAI(base_url=str(api.base_url) + "/v1", api_key="unused", max_retries=0, timeout=60)


def test_openai_client_lists_the_model(oai):
    assert [m.id for m in oai.models.list()] == ["rag"]


def test_openai_client_gets_a_cited_answer(oai, seed_pipeline):
    resp = oai.chat.completions.create(model="rag", messages=[{"role": "user", "content": "What did Peskov say?"}])
    content = resp.choices[0].message.content
    assert resp.object == "chat.completion" and resp.choices[0].finish_reason == "stop"
    answer, sources = content.split("\n\nSources:\n")
    assert "Peskov" in answer and "[1]" in answer
    citations = resp.model_extra["citations"]
    assert citations[0]["text"].startswith(PESKOV_SENTENCE_START)
    # Sources by title and place; the quote is not repeated.
    first = citations[0]
    assert sources.splitlines()[0] == f'[1] {first["title"]}, chars {first["start"]}-{first["end"]}'
    assert first["text"] not in sources
    check_answer_contract({"answer": answer, "abstained": resp.model_extra["rag"]["abstained"],
                           "citations": citations}, seed_pipeline)


def test_openai_client_streams_a_cited_answer(oai, seed_pipeline):
    stream = oai.chat.completions.create(model="rag", stream=True,
                                         messages=[{"role": "user", "content": "What did Peskov say?"}])
    chunks = list(stream)
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    content = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert len([c for c in chunks if c.choices[0].delta.content]) > 3
    assert chunks[-1].choices[0].finish_reason == "stop"
    citations = chunks[-1].model_extra["citations"]
    assert "Peskov" in content and "\n\nSources:\n[1] " in content
    answer = content.split("\n\nSources:\n")[0]
    check_answer_contract({"answer": answer, "abstained": False, "citations": citations}, seed_pipeline)


def test_openai_client_multi_turn(oai):
    resp = oai.chat.completions.create(model="rag", messages=[
        {"role": "system", "content": "Be helpful."},
        {"role": "user", "content": "What is the Anglo-French peacekeeping plan?"},
        {"role": "assistant", "content": "A plan to deploy troops [1]."},
        {"role": "user", "content": "How many troops?"}])
    assert "30,000" in resp.choices[0].message.content
    assert "Anglo-French" in resp.model_extra["rag"]["query"]


def test_openai_client_abstention(oai):
    resp = oai.chat.completions.create(model="rag", messages=[{"role": "user", "content": OFF_TOPIC}])
    assert resp.model_extra["rag"]["abstained"] is True and resp.model_extra["citations"] == []
    assert "Sources:" not in resp.choices[0].message.content


def test_openai_errors_have_openai_shape(oai, api):
    with pytest.raises(openai.NotFoundError) as exc:
        oai.chat.completions.create(model="gpt-4", messages=[{"role": "user", "content": "hi"}])
    assert exc.value.body["code"] == "model_not_found"
    with pytest.raises(openai.UnprocessableEntityError) as exc:
        oai.chat.completions.create(model="rag", messages=[{"role": "assistant", "content": "hi"}])
    assert "last message" in exc.value.body["message"]
    r = api.post("/v1/chat/completions", json={"model": "rag", "messages": []})
    assert r.status_code == 422 and set(r.json()["error"]) == {"message", "type", "param", "code"}


# -- CORS ------------------------------------------------------------------------------------
def test_cors_only_for_listed_origins(make_seed_pipeline, serve_pipeline):
    pipeline = make_seed_pipeline(cors_origins=["https://allowed.example"])
    with serve_pipeline(pipeline) as client:
        ok = client.options("/ask", headers={"Origin": "https://allowed.example",
                                             "Access-Control-Request-Method": "POST",
                                             "Access-Control-Request-Headers": "content-type"})
        bad = client.options("/ask", headers={"Origin": "https://evil.example",
                                              "Access-Control-Request-Method": "POST",
                                              "Access-Control-Request-Headers": "content-type"})
        simple = client.post("/ask", json={"question": "What did Peskov say?"},
                             headers={"Origin": "https://evil.example"})
    assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == "https://allowed.example"
    assert bad.status_code == 400 and "access-control-allow-origin" not in bad.headers
    assert "access-control-allow-origin" not in simple.headers


def test_cors_origins_setting_reads_a_comma_separated_list(monkeypatch):
    from rag.config import Settings

    monkeypatch.setenv("RAG_CORS_ORIGINS", "https://a.example, https://b.example/")
    assert Settings().cors_origins == ["https://a.example", "https://b.example"]
