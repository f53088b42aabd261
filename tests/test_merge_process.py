"""Background merges built by a child process at nice 10 (fast tier: the stand-in embedder): the
child's segment answers exactly as the in-process merge's; closing the store kills a running child
and publishes nothing; a child that cannot run leaves the merge to the serving process."""
from __future__ import annotations

import gzip
import json
import logging
import os
import subprocess
import sys
import threading

import pytest

import rag.merge_process
from rag.documents import Document
from rag.merge_process import ChildMerges, MergeCancelled, MergeJob
from support import SQUAD


@pytest.fixture(scope="module")
def paragraphs():
    data = json.loads(gzip.open(SQUAD).read())["data"][:3]
    return [(a["title"].replace("_", " "), p["context"]) for a in data for p in a["paragraphs"]]


def _segmented(fake_pipeline, paragraphs, data_dir=None):
    """Three flushed segments, one of them with a deleted document."""
    p = fake_pipeline(data_dir, snapshot_every=1, merge_factor=3, background_merge=False)
    p.ingest_documents([Document(id=f"a{i}", source=f"squad/a{i}", title=t, text=x)
                        for i, (t, x) in enumerate(paragraphs[:6])])
    for i in range(6, 8):
        p.put_documents([Document(id=f"a{i}", source=f"squad/a{i}", title=paragraphs[i][0], text=paragraphs[i][1])])
    p.delete_document("a2")
    assert len(p.index.segments) == 3
    return p


def _answers(p, questions):
    return [[(x.chunk_id, round(x.score, 5), x.start, x.end, x.text) for x in p.search(q, 8)] for q in questions]


def test_a_merge_built_by_the_child_answers_as_one_built_here(fake_pipeline, paragraphs, tmp_path):
    questions = ["Who won the game?", "When was it founded?", "What is the capital?", "How many people live there?"]
    here = _segmented(fake_pipeline, paragraphs, tmp_path / "here")
    child = _segmented(fake_pipeline, paragraphs, tmp_path / "child")
    assert here.store.maintenance.merge_step()
    assert child.store.maintenance.merge_step(in_child=True)
    assert len(here.index.segments) == len(child.index.segments) == 1
    assert sorted(d.id for d in child.index.live_documents()) == sorted(d.id for d in here.index.live_documents())
    assert _answers(child, questions) == _answers(here, questions)
    assert not [p.name for p in (tmp_path / "child").rglob(".staged-*")]


def test_the_merge_child_runs_every_thread_at_a_low_priority():
    code = ("import os, threading; from rag.merge_process import lower_priority; lower_priority(every_thread=True); "
            "print(min(os.getpriority(os.PRIO_PROCESS, int(t)) for t in os.listdir('/proc/self/task')))")
    base = os.nice(0)  # the test run's own niceness (0 unless started under `nice`)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert int(out.stdout) == max(base, 10)
    lower = min(19, base + 15)
    out = subprocess.run(["nice", "-n", "15", sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         check=True)
    assert int(out.stdout) == lower > 10, "a server already at a lower priority keeps it"


def test_closing_kills_a_running_child_and_publishes_nothing(fake_pipeline, paragraphs, monkeypatch):
    p = _segmented(fake_pipeline, paragraphs)
    segments = [s.name for s in p.index.segments]
    children = ChildMerges()
    job = MergeJob.of(p.store.root, p.index.segments, p.index.config, p.settings.vector_policy)
    started = threading.Event()
    real_popen = rag.merge_process.subprocess.Popen
    procs = []

    def popen(*args, **kwargs):
        procs.append(real_popen(*args, **kwargs))
        started.set()
        return procs[-1]

    outcome = []

    def run():
        try:
            outcome.append(children.build(job))
        except MergeCancelled:
            outcome.append("cancelled")

    monkeypatch.setattr(rag.merge_process.subprocess, "Popen", popen)
    worker = threading.Thread(target=run)
    worker.start()
    assert started.wait(30)
    children.cancel()
    worker.join(30)
    monkeypatch.undo()
    assert outcome == ["cancelled"]
    assert procs[0].wait(10) is not None
    with pytest.raises(MergeCancelled):  # and no new child once cancelled
        children.build(job)
    assert [s.name for s in p.index.segments] == segments


def test_a_child_that_cannot_run_leaves_the_merge_to_this_process(fake_pipeline, paragraphs, monkeypatch, caplog):
    p = _segmented(fake_pipeline, paragraphs)
    monkeypatch.setattr(rag.merge_process.sys, "executable", "/bin/false")
    with caplog.at_level(logging.WARNING, logger="rag.maintenance"):
        assert p.store.maintenance.merge_step(in_child=True)
    assert "merging in the serving process" in caplog.text and "status 1" in caplog.text
    assert len(p.index.segments) == 1
    assert sorted(d.id for d in p.index.live_documents()) == [f"a{i}" for i in range(8) if i != 2]


def test_a_background_merge_goes_to_the_child(fake_pipeline, paragraphs, monkeypatch):
    p = fake_pipeline(snapshot_every=1, merge_factor=2, flush_seconds=0.2)
    spawned = []
    real_build = ChildMerges.build

    def build(self, job):
        spawned.append(os.getpid())
        return real_build(self, job)

    monkeypatch.setattr(ChildMerges, "build", build)
    p.ingest_documents([Document(id="a0", source="squad/a0", title=paragraphs[0][0], text=paragraphs[0][1])])
    p.load(build_from_seeds=False)  # starts the maintenance thread
    p.put_documents([Document(id="a1", source="squad/a1", title=paragraphs[1][0], text=paragraphs[1][1])])
    p.store.maintenance.wake()
    deadline = threading.Event()
    for _ in range(300):
        if p.store.maintenance.merges:
            break
        deadline.wait(0.1)
    assert p.store.maintenance.merges == 1 and spawned
    assert [d.id for d in p.index.live_documents()] == ["a0", "a1"]
