"""The index store and ingest with the stand-in embedder (fast tier): writes, deletes, an empty
corpus, removal by a stable identity, readers that never wait for writers, a bounded write queue,
and a question embedded once per request."""
from __future__ import annotations

import os
import threading
import time

import pytest

from rag.documents import make_document
from rag.errors import DocumentNotFoundError, IndexCorruptError, UnavailableError
from rag.store import DiskState

from fakes import HashEmbedder

DOCS = [make_document("The harbour of Valdera was rebuilt in 1887 after a storm.", source="a.txt", id="a"),
        make_document("Cats sleep for most of the day and hunt at night.", source="b.txt", id="b")]


def test_put_is_visible_durable_and_reports_outcomes(fake_pipeline, tmp_path):
    p = fake_pipeline()
    p.ingest_documents([DOCS[0]])
    assert p.put_documents([DOCS[1], DOCS[0]]) == ["added", "unchanged"]
    assert p.search("when was the harbour rebuilt", 1)[0].document_id == "a"
    reopened = fake_pipeline(p.settings.data_dir)
    reopened.load(build_from_seeds=False)
    assert sorted(d.id for d in reopened.index.live_documents()) == ["a", "b"]


def test_deleting_the_last_document_leaves_a_normal_empty_corpus(fake_pipeline):
    p = fake_pipeline()
    p.ingest_documents([DOCS[0]])
    p.delete_document("a")
    assert p.index.live_documents() == [] and p.index.chunk_count == 0
    assert p.search("harbour") == []
    result = p.ask("When was the harbour rebuilt?")
    assert result.abstained and result.citations == []
    with pytest.raises(DocumentNotFoundError):
        p.delete_document("a")
    p.compact()  # a snapshot of the empty corpus saves and loads
    reopened = fake_pipeline(p.settings.data_dir)
    reopened.load(build_from_seeds=False)
    assert reopened.index.live_documents() == []


def test_ingest_removes_only_files_gone_from_the_directories_named(fake_pipeline, tmp_path, monkeypatch):
    corpus = tmp_path / "corpus"
    (corpus / "sub").mkdir(parents=True)
    (corpus / "a.txt").write_text("Alpha text about harbours.")
    (corpus / "sub" / "b.txt").write_text("Beta text about cats.")
    elsewhere = tmp_path / "elsewhere.txt"
    elsewhere.write_text("Gamma text about trains.")
    p = fake_pipeline()
    monkeypatch.chdir(corpus)
    first = p.ingest(["."])
    assert first.added == 2
    p.put_documents([make_document("An API document.", source="notes", id="api-doc")])
    p.ingest([elsewhere])
    (corpus / "sub" / "b.txt").unlink()
    report = p.ingest(["."])
    # Only the file under "." that is gone goes; the API document and the file from elsewhere stay.
    assert report.removed == ["sub/b.txt"] and report.unchanged == 1
    sources = sorted(d.source for d in p.index.live_documents())
    assert sources[:2] == ["a.txt", "notes"] and sources[2].endswith("/elsewhere.txt")
    assert not any(s.startswith("/") for s in sources)  # labels, never the server's absolute paths
    # The same file from another working directory is the same document (its absolute path is its identity).
    monkeypatch.chdir(tmp_path)
    again = p.ingest(["corpus"])
    assert (again.added, again.removed) == (0, [])
    assert len(p.index.live_documents()) == 3


def test_reads_never_wait_for_a_writer(fake_pipeline, tmp_path):
    p = fake_pipeline()
    p.ingest_documents(DOCS)
    store = p.store
    store.refresh_interval_s = 0.0
    entered, release = threading.Event(), threading.Event()

    def hold_the_lock():
        with store.exclusive():
            entered.set()
            release.wait(10)

    other = fake_pipeline(p.settings.data_dir)  # another process's writer, to queue behind ours
    other.load(build_from_seeds=False)
    writer = threading.Thread(target=hold_the_lock)
    writer.start()
    assert entered.wait(10)
    try:
        queued = threading.Thread(target=other.put_documents,
                                  args=([make_document("A third document on trains.", source="c.txt", id="c")],))
        queued.start()
        store._seen = DiskState("as if another process wrote", -1)  # the disk looks changed to readers
        done = threading.Event()
        threading.Thread(target=lambda: (p.search("cats"), done.set())).start()
        assert done.wait(5), "a read waited for the writer"
        assert p.index.document("c") is None
    finally:
        release.set()
        writer.join()
    queued.join(10)
    p.search("cats")  # the lock is free again: the next read picks up the other writer's change
    assert p.index.document("c") is not None


def test_writes_beyond_the_queue_bound_are_refused_at_once(fake_pipeline):
    p = fake_pipeline(max_queued_writes=0)
    p.ingest_documents(DOCS)
    entered, release = threading.Event(), threading.Event()
    original = p.store.builder

    def slow_builder(*args, **kwargs):
        entered.set()
        release.wait(10)
        return original(*args, **kwargs)

    p.store.builder = slow_builder
    t = threading.Thread(target=p.put_documents, args=([make_document("slow one", source="s", id="s")],))
    t.start()
    assert entered.wait(10)
    try:
        with pytest.raises(UnavailableError, match="too many writes"):
            p.put_documents([make_document("second", source="t", id="t")])
        assert p.search("cats", 1)[0].document_id == "b"  # reads go on meanwhile
    finally:
        release.set()
        t.join()
    p.store.builder = original
    assert p.put_documents([make_document("second", source="t", id="t")]) == ["added"]


def test_a_question_is_embedded_once_per_request(fake_pipeline):
    p = fake_pipeline()
    p.ingest_documents(DOCS)
    embedder = p.embedder
    p.generators.get("extractive").abstain_threshold(p.index)  # once per corpus, not per request (rag/abstention.py)
    before = embedder.calls
    p.ask("When was the harbour of Valdera rebuilt?")
    assert embedder.calls - before == 1
    p.ask("Who rebuilt the harbour of Valdera?")
    assert embedder.calls - before == 2
    before = embedder.calls
    p.search("cats at night", mode="lexical")
    assert embedder.calls - before == 1  # lexical too: the calibrated passage score uses the cosine


def test_per_call_arguments_override_settings(fake_pipeline):
    p = fake_pipeline(top_k=1)
    p.ingest_documents(DOCS)
    assert len(p.search("text")) == 1  # RAG_TOP_K
    assert len(p.search("text", top_k=2)) == 2


def test_the_pipeline_closes_what_it_made(fake_pipeline):
    p = fake_pipeline()
    p.ingest_documents(DOCS)
    llm = p.generators.get("openai")
    with p:
        pass
    assert llm._client.is_closed
    assert os.path.exists(p.settings.index_dir / "CURRENT")


def test_a_write_whose_client_leaves_is_not_made_and_frees_the_writer(fake_pipeline):
    """Over real HTTP: a large document embeds slowly; the client gives up; nothing is written and
    the next write goes through at once."""
    import httpx

    from server.app import create_app
    from support import running_server

    class SlowEmbedder(HashEmbedder):
        def encode(self, texts, *, show_progress=False):
            if len(texts) > 1:
                time.sleep(0.5)  # a big batch: the model at work
            return super().encode(texts)

    p = fake_pipeline(rate_limit=0)
    p._embedder = SlowEmbedder()
    p.ingest_documents(DOCS)
    big = " ".join(f"Sentence number {i} says something about harbour {i % 7}." for i in range(5000))
    with running_server(create_app(p, load_in_background=False)) as url:
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(url + "/documents", json={"id": "big", "text": big}, timeout=1.0)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # the abandoned write stops at its next embedding batch
            small = httpx.post(url + "/documents", json={"id": "small", "text": "A small note."}, timeout=30)
            if small.status_code == 201:
                break
        assert small.status_code == 201
        assert p.index.document("big") is None and p.index.document("small") is not None
    assert b'"big"' not in (p.settings.index_dir / "journal.jsonl").read_bytes()


def test_a_rebuild_after_a_damaged_documents_file_keeps_the_journal_records(fake_pipeline):
    p = fake_pipeline()
    p.ingest_documents(DOCS)
    p.put_documents([make_document("A third document on trains.", source="c.txt", id="c")])  # journal only
    (snapshot,) = [d for d in p.settings.index_dir.iterdir() if d.name.startswith("seg-")]
    (snapshot / "documents.jsonl").write_text("damaged\n")
    damaged = fake_pipeline(p.settings.data_dir)
    damaged.load(build_from_seeds=False)  # the damaged segment is left out and reported; the rest serves
    assert [name for name, _, _ in damaged.index.damaged] == [snapshot.name]
    assert [d.id for d in damaged.index.live_documents()] == ["c"]
    with pytest.raises(IndexCorruptError, match="documents file too"):
        damaged.store.maintenance.repair()  # its own documents file is damaged: only the original files can help
    report = damaged.ingest_documents([], rebuild=True)  # what `rag ingest --rebuild` does
    assert report.rebuilt and "could not be used" in report.rebuilt and "are lost" in report.rebuilt
    assert [d.id for d in damaged.index.live_documents()] == ["c"]  # the segment's own documents are lost with their file
    assert damaged.search("trains", 1)[0].document_id == "c"
