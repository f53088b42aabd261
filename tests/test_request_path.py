"""The request path's choices (fast tier): where a question's CPU work runs, and which ONNX session
embeds a lone question."""
from __future__ import annotations

import asyncio
import threading

import httpx

from rag.onnx_query import LeanEncoder, SessionChoice
from server.app import create_app
from server.query_api import _cpu_only


def test_a_lone_question_runs_on_the_event_loop_and_others_in_worker_threads(fake_pipeline, monkeypatch):
    pipeline = fake_pipeline(rate_limit=0)
    pipeline.load()
    pipeline.store.refresh_interval_s = 3600  # after the first look, no look at the disk is due
    app = create_app(pipeline, load_in_background=False)
    service = pipeline.service
    threads: list[str] = []
    ask, search = service.ask, service.search
    monkeypatch.setattr(service, "ask", lambda *a, **k: threads.append(threading.current_thread().name) or ask(*a, **k))
    monkeypatch.setattr(service, "search",
                        lambda *a, **k: threads.append(threading.current_thread().name) or search(*a, **k))

    async def go():
        loop_thread = threading.current_thread().name
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1") as c:
            async def ask_once(path="/ask", key="question"):
                r = await c.post(path, json={key: "What did Peskov say?"})
                assert r.status_code == 200, r.text
                return r.json()

            first = await ask_once()  # the disk is due a look (and maybe a reload): a worker thread
            alone = await ask_once()
            alone_search = await ask_once("/search", "query")
            app.state.inflight.count += 1  # another API request in flight
            crowded = await ask_once()
            app.state.inflight.count -= 1
            monkeypatch.setattr(service, "may_read_disk", lambda: True)
            due = await ask_once()
        return loop_thread, first, alone, alone_search, crowded, due

    loop_thread, first, alone, alone_search, crowded, due = asyncio.run(go())
    assert threads[1] == threads[2] == loop_thread
    assert loop_thread not in (threads[0], threads[3], threads[4])
    assert first["answer"] == alone["answer"] == crowded["answer"] == due["answer"]  # the same answer either way
    assert alone_search["passages"]
    monkeypatch.setattr(service, "may_read_disk", lambda: False)
    assert _cpu_only(service) and not _cpu_only(service, "openai")  # an LLM waits on the network


def test_a_lone_question_takes_the_session_that_has_lately_been_faster():
    choice = SessionChoice(window=5, explore_every=4, min_samples=2)
    assert choice.best() == "single"  # too few samples: measure the one with fewer
    choice.record("single", 0.004)
    assert choice.best() == "wide"
    for _ in range(3):
        choice.record("single", 0.004)
        choice.record("wide", 0.003)
    picks = [choice.pick() for _ in range(8)]
    assert picks == ["wide", "wide", "wide", "single"] * 2  # every 4th pick tries the other
    for _ in range(5):  # the machine got busy: the wide session slowed down
        choice.record("wide", 0.012)
    assert choice.best() == "single"


def test_the_lean_encoder_is_only_for_layouts_it_reproduces():
    class Module:
        pass

    assert LeanEncoder.from_model([]) is None
    assert LeanEncoder.from_model([Module(), Module()]) is None
