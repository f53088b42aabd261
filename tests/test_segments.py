"""The segmented index (fast tier: the stand-in embedder): after many random writes, flushes and
merges, a query sees exactly what one index freshly built over the live documents shows; merges
keep deletions made while they ran; a failed merge leaves the index as it was."""
from __future__ import annotations

import gzip
import json
import random
import threading

import numpy as np
import pytest

import rag.merge_process
from rag.documents import Document
from support import SQUAD


@pytest.fixture(scope="module")
def squad():
    data = json.loads(gzip.open(SQUAD).read())["data"][:6]
    paragraphs = [(a["title"].replace("_", " "), p["context"]) for a in data for p in a["paragraphs"]]
    questions = [q["question"] for a in data for p in a["paragraphs"] for q in p["qas"]]
    return paragraphs, questions


def _doc(doc_id: str, title: str, text: str) -> Document:
    return Document(id=doc_id, source=f"squad/{doc_id}", title=title, text=text)


def _results(pipeline, questions):
    out = []
    for q in questions:
        passages = pipeline.search(q, 10)
        out.append([(p.chunk_id, round(p.score, 5), p.start, p.end, p.text) for p in passages])
    return out


def test_random_writes_flushes_and_merges_search_exactly_as_one_fresh_index(fake_pipeline, squad):
    paragraphs, questions = squad
    rng = random.Random(7)
    p = fake_pipeline(snapshot_every=9, merge_factor=3, background_merge=False)
    live: dict[str, Document] = {}
    first = [_doc(f"p{i}", *paragraphs[i]) for i in range(60)]
    p.ingest_documents(first)
    live.update((d.id, d) for d in first)
    most_segments = merges = 0
    for step in range(312):  # the last merges at step 299; the writes after it leave deletions to mask
        op = rng.random()
        if op < 0.45 or len(live) < 10:  # a new document
            title, text = paragraphs[rng.randrange(len(paragraphs))]
            doc = _doc(f"n{step}", title, f"{text} (Revision {step}.)")  # no two texts alike: no exact ties
            p.put_documents([doc])
            live[doc.id] = doc
        elif op < 0.75:  # a changed document
            doc_id = rng.choice(sorted(live))
            title, text = paragraphs[rng.randrange(len(paragraphs))]
            doc = _doc(doc_id, title, f"{text} (Revision {step}.)")
            p.put_documents([doc])
            live[doc_id] = doc
        else:
            doc_id = rng.choice(sorted(live))
            p.delete_document(doc_id)
            del live[doc_id]
        most_segments = max(most_segments, len(p.index.segments))
        if step % 25 == 24:
            merges += p.store.maintenance.merge_pending()
    assert most_segments >= 4 and merges >= 3, (most_segments, merges)  # the writes did make and merge segments
    assert any(s.deleted for s in p.index.segments)  # and left deletions to mask
    fresh = fake_pipeline(tmp_data := p.settings.data_dir.parent / "fresh")
    fresh.ingest_documents(list(live.values()))
    assert len(fresh.index.segments) == 1 and tmp_data.exists()
    assert {d.id for d in p.index.live_documents()} == set(live)
    sample = questions[::7][:60]
    expected = _results(fresh, sample)
    assert _results(p, sample) == expected
    # Filters, asks and a reload from disk (manifest, segments and journal) agree too.
    flt = {"source": {"$in": sorted(f"squad/{i}" for i in list(live)[:40])}}
    assert [x.chunk_id for x in p.search(sample[0], 10, filters=flt)] == \
           [x.chunk_id for x in fresh.search(sample[0], 10, filters=flt)]
    assert p.ask(sample[1]).answer == fresh.ask(sample[1]).answer
    reopened = fake_pipeline(p.settings.data_dir)
    reopened.load(build_from_seeds=False)
    assert _results(reopened, sample) == expected


def test_a_merge_keeps_the_deletions_made_while_it_ran(fake_pipeline, squad, monkeypatch):
    paragraphs, _ = squad
    p = fake_pipeline(snapshot_every=1, merge_factor=2, background_merge=False)
    p.ingest_documents([_doc("a0", *paragraphs[0]), _doc("a1", *paragraphs[1])])
    p.put_documents([_doc("b0", *paragraphs[2])])  # flushed at once: a second segment
    assert len(p.index.segments) == 2
    started, release = threading.Event(), threading.Event()
    real = rag.merge_process.merge_segments

    def slow_merge(*args, **kwargs):
        started.set()
        assert release.wait(30)
        return real(*args, **kwargs)

    monkeypatch.setattr(rag.merge_process, "merge_segments", slow_merge)
    merged: list[bool] = []
    worker = threading.Thread(target=lambda: merged.append(p.store.maintenance.merge_step()))
    worker.start()
    assert started.wait(30)
    p.delete_document("a1")  # the writer lock is free while the merge is built
    p.put_documents([_doc("b0", *paragraphs[3])])  # a replaced document is deleted in the merge's input
    release.set()
    worker.join(30)
    assert merged == [True]
    ids = sorted(d.id for d in p.index.live_documents())
    assert ids == ["a0", "b0"]
    assert p.index.document("b0").text == paragraphs[3][1]
    reopened = fake_pipeline(p.settings.data_dir)
    reopened.load(build_from_seeds=False)
    assert sorted(d.id for d in reopened.index.live_documents()) == ids
    assert reopened.index.document("b0").text == paragraphs[3][1]


def test_a_failed_merge_leaves_its_inputs_in_force(fake_pipeline, squad, monkeypatch):
    import rag.manifest

    paragraphs, questions = squad
    p = fake_pipeline(snapshot_every=1, merge_factor=2, background_merge=False)
    p.ingest_documents([_doc("a0", *paragraphs[0])])
    p.put_documents([_doc("a1", *paragraphs[1])])
    before = (p.settings.index_dir / "CURRENT").read_text()
    names = [s.name for s in p.index.segments]
    results = _results(p, questions[:5])

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(rag.manifest, "fsync_path", full_disk)  # the manifest naming the merge cannot be written
    with pytest.raises(OSError):
        p.store.maintenance.merge_step()
    monkeypatch.undo()
    assert (p.settings.index_dir / "CURRENT").read_text() == before
    reopened = fake_pipeline(p.settings.data_dir)
    reopened.load(build_from_seeds=False)
    assert [s.name for s in reopened.index.segments] == names
    assert _results(reopened, questions[:5]) == results


def test_the_merge_policy_merges_a_tier_once_it_is_full_and_rewrites_mostly_deleted_segments(fake_pipeline):
    from rag.merge import MergePolicy
    from rag.segments import Segment

    class Sized:  # only what the policy reads
        def __init__(self, chunks, live, name="s"):
            self.chunks, self.live_chunks, self.name = chunks, live, name

    policy = MergePolicy(factor=3, floor_chunks=100)
    assert policy.pick([Sized(50, 50), Sized(60, 60), Sized(5000, 5000)]) is None
    assert policy.pick([Sized(50, 50), Sized(60, 60), Sized(5000, 5000), Sized(10, 10)]) == [0, 1, 3]
    assert policy.pick([Sized(50, 50), Sized(60, 60), Sized(10, 10, None)]) is None  # in memory: not merged
    assert policy.pick([Sized(5000, 3000)]) == [0]  # 40% deleted
    assert policy.tier(99) == 0 and policy.tier(100) == policy.tier(299) == 1 and policy.tier(300) == 2
    assert Segment  # the type the policy is given in production


def test_bm25_statistics_over_segments_equal_one_index_over_the_live_chunks():
    from rag.lexical import BM25Index, BM25View, tokenize

    texts = ["the harbour light was repaired", "a storm hit the harbour", "cats sleep all day",
             "the light of the harbour", "", "storm storm storm"]
    titles = ["Harbour", "Weather", "Cats", "Harbour", "Empty", "Weather"]
    one = BM25Index.build(texts[:3], titles[:3])
    two = BM25Index.build(texts[3:], titles[3:])
    live = np.array([True, False, True])
    view = BM25View([(one, live), (two, None)])
    kept = [0, 2, 3, 4, 5]
    fresh = BM25Index.build([texts[i] for i in kept], [titles[i] for i in kept])
    for query in ["harbour storm", "light", "cats", "nothing matches"]:
        scores = view.scores(query)
        assert scores[1] == 0.0  # a deleted chunk never scores
        np.testing.assert_array_equal(np.delete(scores, 1), fresh.scores(query))
        terms = tokenize([query])[0]
        assert view.idf(terms) == fresh.idf(terms) and view.scored_idf(terms) == fresh.scored_idf(terms)
    merged = BM25Index.merged([(one, np.flatnonzero(live)), (two, np.arange(3))])
    np.testing.assert_array_equal(merged.scores("harbour storm"), fresh.scores("harbour storm"))
    # Shards add their statistics: scored with the sum, each part gives the one index's scores.
    stats = one.view().stats("harbour") + two.view().stats("harbour")
    whole = BM25Index.build(texts, titles)
    np.testing.assert_array_equal(np.concatenate([one.scores("harbour", stats), two.scores("harbour", stats)]),
                                  whole.scores("harbour"))


def test_a_crash_at_any_step_of_a_merge_loses_nothing(fake_pipeline, squad, monkeypatch, tmp_path):
    """The files as kill -9 would leave them before every fsync of a merge (its segment staged, the
    segment published, the manifest written, CURRENT flipped, the journal emptied): each one,
    loaded, holds every acknowledged write and answers as before."""
    import shutil

    import rag.journal
    import rag.manifest
    import rag.snapshot

    paragraphs, questions = squad
    p = fake_pipeline(snapshot_every=2, merge_factor=3, background_merge=False)
    p.ingest_documents([_doc(f"a{i}", *paragraphs[i]) for i in range(4)])
    for i in range(4, 8):
        p.put_documents([_doc(f"a{i}", *paragraphs[i])])
    p.delete_document("a1")
    p.put_documents([_doc("a9", *paragraphs[9])])  # in the journal only, when the merge starts
    assert len(p.index.segments) >= 3
    expected = {d.id: d.text for d in p.index.live_documents()}
    results = _results(p, questions[:5])
    data = p.settings.index_dir
    images = []

    def crash_here(real):
        def wrapped(path):
            image = tmp_path / f"crash-{len(images):03d}" / "data"
            shutil.copytree(data, image / "index")
            images.append(image)
            return real(path)
        return wrapped

    for module in (rag.snapshot, rag.manifest, rag.journal):
        monkeypatch.setattr(module, "fsync_path", crash_here(module.fsync_path))
    assert p.store.maintenance.merge_step()
    monkeypatch.undo()
    assert len(images) > 5
    for image in images:
        reopened = fake_pipeline(image)
        reopened.load(build_from_seeds=False)
        assert {d.id: d.text for d in reopened.index.live_documents()} == expected, image
        assert _results(reopened, questions[:5]) == results, image


def test_a_bulk_ingest_writes_segment_by_segment_and_leaves_one(fake_pipeline, squad, monkeypatch):
    import rag.ingest

    paragraphs, questions = squad
    written = []
    real = rag.ingest.write_segment

    def counting(index, root, **kwargs):
        written.append(len(index.documents))
        return real(index, root, **kwargs)

    monkeypatch.setattr(rag.ingest, "SEGMENT_CHARS", 5_000)  # a segment every few paragraphs
    monkeypatch.setattr(rag.ingest, "write_segment", counting)
    docs = [_doc(f"b{i}", *paragraphs[i]) for i in range(40)]
    p = fake_pipeline(background_merge=False)
    p.ingest_documents(docs)
    assert len(written) > 3 and max(written) < len(docs)  # built and written one part at a time
    assert len(p.index.segments) == 1 and p.index.document_count == len(docs)  # then merged into one
    fresh = fake_pipeline(p.settings.data_dir.parent / "fresh")
    monkeypatch.setattr(rag.ingest, "SEGMENT_CHARS", 10**9)
    fresh.ingest_documents(docs)
    assert _results(p, questions[:10]) == _results(fresh, questions[:10])


def test_a_bulk_ingest_streams_an_iterable_holding_one_segment_of_documents(fake_pipeline, squad, monkeypatch):
    """A generator is read once, segment by segment: the documents of a written segment are let go
    of before the next are drawn; a document given twice keeps its last text; the index searches
    as one built from the list."""
    import gc
    import weakref

    import rag.ingest

    paragraphs, questions = squad
    monkeypatch.setattr(rag.ingest, "SEGMENT_CHARS", 5_000)
    alive_at_draw, refs, segments_at_draw = [], [], []
    p = fake_pipeline(background_merge=False)
    written = []
    real = rag.ingest.write_segment
    monkeypatch.setattr(rag.ingest, "write_segment", lambda index, root, **kw: written.append(1) or real(index, root, **kw))

    def draw():
        for i in range(40):
            gc.collect()
            alive_at_draw.append(sum(r() is not None for r in refs))
            segments_at_draw.append(len(written))
            doc = _doc(f"b{i}", *paragraphs[i])
            refs.append(weakref.ref(doc))
            yield doc
        yield _doc("b3", paragraphs[50][0], paragraphs[50][1])  # b3 again, written long ago: replaced

    report = p.ingest_documents(draw())
    assert report.added == 41 and p.index.document_count == 40
    assert segments_at_draw[-1] > 3 and segments_at_draw[20] > 0  # segments written while drawing
    assert max(alive_at_draw) < 15  # a segment's documents, not the corpus
    assert p.index.document("b3").text == paragraphs[50][1]
    docs = [_doc(f"b{i}", *paragraphs[i]) for i in range(40) if i != 3] + [_doc("b3", *paragraphs[50])]
    fresh = fake_pipeline(p.settings.data_dir.parent / "fresh")
    fresh.ingest_documents(docs)
    assert _results(p, questions[:10]) == _results(fresh, questions[:10])
    # Again from a generator over the stored index: unchanged documents stay, changed ones are replaced.
    again = iter([*docs[:30], _doc("b5", paragraphs[51][0], paragraphs[51][1]), _doc("new", *paragraphs[52])])
    report = p.ingest_documents(again)
    assert (report.unchanged, report.updated, report.added) == (30, 1, 1) and p.index.document_count == 41
    fresh.ingest_documents([_doc("b5", *paragraphs[51]), _doc("new", *paragraphs[52])])
    assert _results(p, questions[:10]) == _results(fresh, questions[:10])


def test_a_merge_spilling_to_its_work_directory_equals_one_held_in_memory(fake_pipeline, squad, tmp_path, monkeypatch):
    """With a work directory a merge writes its IVF and postings there and reads them back on
    demand: the same vectors, clusters and postings as a merge held in memory, and written as a
    segment they load and search the same."""
    import rag.ingest
    from rag.merge import merge_segments
    from rag.snapshot import load_segment, write_segment
    from rag.vectors import as_ivf

    paragraphs, questions = squad
    monkeypatch.setattr(rag.ingest, "SEGMENT_CHARS", 250_000)
    p = fake_pipeline(vector_index="ivf", background_merge=False)
    rag.ingest.Ingestor(p.store, merge=False).ingest_documents(  # enough chunks for an IVF, in segments
        _doc(f"r{i}", paragraphs[i % len(paragraphs)][0], f"{paragraphs[i % len(paragraphs)][1]} (Revision {i}.)")
        for i in range(1100))
    segments = p.index.segments
    assert len(segments) > 2
    segments = [segments[0].without([0, 5]), *segments[1:]]  # deletions too
    policy, config = p.settings.vector_policy, p.index.config
    held = merge_segments(segments, config, policy)
    (tmp_path / "work").mkdir()
    spilled = merge_segments(segments, config, policy, sentence_file=tmp_path / "work" / "sentence_vectors.npy")
    assert as_ivf(held.vectors) is not None and spilled.vectors_source is not None
    n = held.vectors.ntotal
    assert spilled.vectors.ntotal == n and as_ivf(spilled.vectors).nprobe == as_ivf(held.vectors).nprobe
    np.testing.assert_array_equal(spilled.vectors.reconstruct_n(0, n), held.vectors.reconstruct_n(0, n))
    queries = held.vectors.reconstruct_n(0, 20)
    for a, b in zip(held.vectors.search(queries, 10), spilled.vectors.search(queries, 10)):
        np.testing.assert_array_equal(a, b)
    for name in ("indptr", "rows", "tf", "in_text", "lengths", "text_df"):
        np.testing.assert_array_equal(np.asarray(getattr(spilled.bm25, name)[:]), getattr(held.bm25, name))
    assert spilled.bm25.vocab == held.bm25.vocab
    written = load_segment(tmp_path / write_segment(spilled, tmp_path), config, policy=policy)
    np.testing.assert_array_equal(written.vectors.reconstruct_n(0, n), held.vectors.reconstruct_n(0, n))
    for q in questions[:5]:
        np.testing.assert_array_equal(written.bm25.scores(q), held.bm25.scores(q))
    # A stored IVF input is read into memory for the merge (not through its mapping): the same vectors.
    from rag.merge import _readable
    from rag.segments import Segment

    assert _readable(written) is not written.vectors
    again = merge_segments([Segment(written)], config, policy)
    np.testing.assert_array_equal(again.vectors.reconstruct_n(0, n), held.vectors.reconstruct_n(0, n))
