"""Edge cases found in review: long streamed markers, abandoned circuit-breaker trials, lone
surrogates, odd chat content parts, upstream error bodies, `rag ingest .` removals."""
from __future__ import annotations

import os

from rag.generation.reply import ReplyParser
from rag.generation.openai_chat import cite
from rag.generation.resilience import CircuitBreaker, CircuitOpenError


def test_streamed_long_marker_lists_renumber_like_the_whole_text(seed_pipeline):
    passages = seed_pipeline.search("What did Peskov say?", 12)
    reply = "First [S3, S4, S5, S6, S7, S8, S9, S10, S11]. Also [S2]. Bad [S40]."
    whole = cite(reply, passages, "openai").text
    streamed = ReplyParser(len(passages))
    pieces = "".join(streamed.feed(ch) for ch in reply) + streamed.finish()
    assert pieces.strip() == whole
    assert len(passages) == 8  # the seed index has 8 chunks: markers 9-11 and 40 name no passage
    assert whole == "First [1][2][3][4][5][6]. Also [7]. Bad."


def test_an_abandoned_half_open_trial_does_not_keep_the_circuit_open():
    now = [100.0]
    breaker = CircuitBreaker(threshold=1, cooldown_s=30, clock=lambda: now[0])
    breaker.record_failure()
    try:
        breaker.before_call()
        raise AssertionError("an open circuit refuses calls")
    except CircuitOpenError:
        pass
    now[0] += 30
    breaker.before_call()  # the half-open trial
    breaker.abandon()  # ...whose client went away
    breaker.before_call()  # a new trial is allowed
    breaker.record_success()
    assert breaker.state == "closed"


def test_lone_surrogates_are_invalid_input_not_a_crash(api):
    body = b'{"question": "What did \\ud800 Peskov say?"}'
    r = api.post("/ask", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 422 and "surrogate" in r.json()["detail"]
    r = api.post("/v1/chat/completions", content=b'{"model": "rag", "messages": [{"role": "user", '
                 b'"content": "\\udc00"}]}', headers={"content-type": "application/json"})
    assert r.status_code == 422
    assert api.get("/healthz").status_code == 200


def test_chat_content_parts_that_are_not_text_are_ignored(api):
    r = api.post("/v1/chat/completions", json={"model": "rag", "messages": [{"role": "user", "content": [
        {"type": "text", "text": 123}, {"type": "image_url", "image_url": {"url": "x"}},
        {"type": "text", "text": "What did Peskov say?"}]}]})
    assert r.status_code == 200
    assert "Peskov" in r.json()["choices"][0]["message"]["content"]


def test_upstream_error_bodies_are_logged_not_returned(make_seed_pipeline, serve_pipeline, llm):
    llm.mode = "error"
    pipeline = make_seed_pipeline(openai_base_url=llm.base_url, openai_model="stand-in", openai_max_retries=0)
    with serve_pipeline(pipeline) as client:
        body = client.post("/ask", json={"question": "What did Peskov say?", "generator": "openai"}).json()
    assert body["fallback"]["reason"] == "LLM server answered HTTP 500"
    assert "crashed" not in str(body)


def test_ingest_dot_removes_files_that_are_gone(tmp_path, tmp_pipeline):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.txt").write_text("Alpha ships carry amber.\n", encoding="utf-8")
    (corpus / "b.txt").write_text("Beta trains carry basalt.\n", encoding="utf-8")
    cwd = os.getcwd()
    os.chdir(corpus)
    try:
        pipeline = tmp_pipeline(tmp_path / "data")
        assert pipeline.ingest(["."]).added == 2
        (corpus / "b.txt").unlink()
        report = pipeline.ingest(["."])
    finally:
        os.chdir(cwd)
    assert (report.removed, report.unchanged, report.documents) == (["b.txt"], 1, 1)
    assert [d.source for d in pipeline.index.live_documents()] == ["a.txt"]


def test_a_server_picks_up_what_another_process_ingested(tmp_path, tmp_pipeline, serve_pipeline):
    serving = tmp_pipeline(tmp_path / "data", rate_limit=0)
    serving.load()
    serving.store.refresh_interval_s = 0.0
    extra = tmp_path / "lighthouse.txt"
    extra.write_text("The Skellig lighthouse keeper, Orla Brennan, retired in 1987.\n", encoding="utf-8")
    with serve_pipeline(serving) as client:
        before = client.get("/documents").json()["total"]
        other = tmp_pipeline(tmp_path / "data")  # another process, as `rag ingest` would be
        assert other.ingest([extra]).added == 1
        body = client.post("/ask", json={"question": "Who was the Skellig lighthouse keeper?"}).json()
        after = client.get("/documents").json()["total"]
    assert (before, after) == (1, 2)
    assert not body["abstained"] and "Orla Brennan" in body["citations"][0]["text"]
