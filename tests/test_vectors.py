"""The vector index by corpus size: flat while small, IVF-Flat beyond the threshold, on real embeddings
(SQuAD dev sentences embedded by the real model): recall against exact search, filters, reuse of a
trained quantizer, memory-mapped loading, and the pipeline choosing by size."""
from __future__ import annotations

import gzip
import json

import faiss
import numpy as np
import pytest

from rag.chunking import split_sentences
from rag.manifest import load_index
from rag.vectors import (EXACT_SUBSET_LIMIT, VectorIndexPolicy, as_ivf, build_vector_index, describe, nlist_for,
                         nprobe_for, read_vector_index, search, uses_ivf)

from support import REPO

SQUAD = REPO.parent / "shared" / "data" / "squad-v1.1-dev.json.gz"
N_CORPUS, N_QUERIES = 1600, 100


@pytest.fixture(scope="module")
def real_vectors(embedder) -> tuple[np.ndarray, np.ndarray]:
    """(corpus, queries): SQuAD dev sentences and questions, embedded by the real model."""
    data = json.loads(gzip.open(SQUAD).read())
    sentences, questions = [], []
    for article in data["data"]:
        for para in article["paragraphs"]:
            text = para["context"]
            sentences += [text[s.start:s.end] for section in split_sentences(text) for s in section]
            questions += [qa["question"] for qa in para["qas"]]
        if len(sentences) >= N_CORPUS:
            break
    return embedder.encode(sentences[:N_CORPUS]), embedder.encode(questions[:N_QUERIES])


def _exact_top(corpus: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    return np.argsort(-(queries @ corpus.T), axis=1, kind="stable")[:, :k]


def test_policy_chooses_flat_while_small_and_ivf_from_the_threshold():
    auto = VectorIndexPolicy()
    assert auto.kind == "auto" and not uses_ivf(49_999, auto) and uses_ivf(50_000, auto)
    assert not uses_ivf(10**7, VectorIndexPolicy(kind="flat"))
    assert uses_ivf(5000, VectorIndexPolicy(kind="ivf"))
    assert not uses_ivf(100, VectorIndexPolicy(kind="ivf"))  # too few vectors to train clusters on
    assert nlist_for(1_000_000) == 1024 and nlist_for(100_000) == 256 and nlist_for(10) == 16
    assert nprobe_for(1024) == 32 and nprobe_for(16) == 16


def test_ivf_recall_against_exact_search_on_real_embeddings(real_vectors):
    corpus, queries = real_vectors
    index = build_vector_index(corpus, VectorIndexPolicy(kind="ivf", nprobe=8))  # a quarter of 32 clusters
    ivf = as_ivf(index)
    assert ivf is not None and ivf.nlist == nlist_for(len(corpus)) == 32 and ivf.nprobe == 8
    assert describe(index) == {"type": "ivf-flat", "vectors": len(corpus), "nlist": ivf.nlist, "nprobe": ivf.nprobe}
    truth = _exact_top(corpus, queries, 10)
    found = np.vstack([search(index, q, 10)[1] for q in queries])
    recall = np.mean([len(set(t) & set(f)) / 10 for t, f in zip(truth.tolist(), found.tolist())])
    assert recall >= 0.95, recall
    # Rows answer as their own ids and reconstruct to the stored vectors (fusion relies on both).
    np.testing.assert_allclose(index.reconstruct_n(0, len(corpus)), corpus, atol=1e-6)
    scores, rows = search(index, corpus[7], 1)
    assert rows[0] == 7 and scores[0] == pytest.approx(1.0, abs=1e-5)


def test_filtered_ivf_search_returns_only_allowed_rows_and_the_exact_best(real_vectors):
    corpus, queries = real_vectors
    index = build_vector_index(corpus, VectorIndexPolicy(kind="ivf", nprobe=8))
    rng = np.random.default_rng(1)
    few = np.zeros(len(corpus), dtype=bool)
    few[rng.choice(len(corpus), 40, replace=False)] = True  # few rows: compared exactly
    many = rng.random(len(corpus)) < 0.5  # many rows: probed with a selector
    assert few.sum() <= EXACT_SUBSET_LIMIT
    for q in queries[:20]:
        scores, rows = search(index, q, 5, few)
        allowed = np.flatnonzero(few)
        expected = allowed[np.argsort(-(corpus[allowed] @ q), kind="stable")[:5]]
        assert rows.tolist() == expected.tolist()
        assert np.all(np.diff(scores) <= 1e-6)
        _, rows = search(index, q, 5, many)
        rows = rows[rows >= 0]
        assert len(rows) == 5 and many[rows].all()
    none = np.zeros(len(corpus), dtype=bool)
    assert len(search(index, queries[0], 5, none)[1]) == 0


def test_flat_filtered_search_matches_brute_force(real_vectors):
    corpus, queries = real_vectors
    index = build_vector_index(corpus[:500], VectorIndexPolicy(kind="auto"))
    assert as_ivf(index) is None and describe(index)["type"] == "flat"
    mask = np.zeros(500, dtype=bool)
    mask[::7] = True
    _, rows = search(index, queries[0], 3, mask)
    allowed = np.flatnonzero(mask)
    assert rows.tolist() == allowed[np.argsort(-(corpus[allowed] @ queries[0]))[:3]].tolist()


def test_a_write_reuses_the_trained_quantizer_while_the_cluster_count_holds(real_vectors):
    corpus, _ = real_vectors
    first = build_vector_index(corpus[:1500], VectorIndexPolicy(kind="ivf"))
    second = build_vector_index(corpus, VectorIndexPolicy(kind="ivf"), previous=first)
    assert as_ivf(first).nlist == as_ivf(second).nlist
    c1 = as_ivf(first).quantizer.reconstruct_n(0, as_ivf(first).nlist)
    c2 = as_ivf(second).quantizer.reconstruct_n(0, as_ivf(second).nlist)
    np.testing.assert_array_equal(c1, c2)
    assert second.ntotal == len(corpus)


def test_stored_ivf_loads_memory_mapped_with_the_same_answers(real_vectors, tmp_path):
    corpus, queries = real_vectors
    index = build_vector_index(corpus, VectorIndexPolicy(kind="ivf", nprobe=4))
    path = tmp_path / "v.faiss"
    faiss.write_index(index, str(path))
    loaded = read_vector_index(str(path))
    assert as_ivf(loaded).nprobe == 4
    for q in queries[:10]:
        a, b = search(index, q, 10), search(loaded, q, 10)
        assert a[1].tolist() == b[1].tolist()
    np.testing.assert_array_equal(loaded.reconstruct(11), corpus[11])


def test_pipeline_builds_ivf_beyond_the_threshold_and_answers_with_citations(tmp_pipeline):
    # Documents made of SQuAD paragraphs, enough for 1,000+ chunks of 200 characters.
    data = json.loads(gzip.open(SQUAD).read())
    from rag.documents import make_document

    docs = []
    for article in data["data"][:12]:
        text = "\n\n".join(p["context"] for p in article["paragraphs"])
        docs.append(make_document(text, source=f"squad/{article['title']}", title=article["title"].replace("_", " ")))
    pipeline = tmp_pipeline(vector_index="auto", ivf_min_chunks=1024, chunk_size=200, chunk_overlap=0)
    pipeline.ingest_documents(docs)
    n_chunks = len(pipeline.index.chunks)
    assert n_chunks >= 1024
    assert [describe(s.index.vectors)["type"] for s in pipeline.index.segments] == ["ivf-flat"]
    result = pipeline.ask("Which NFL team represented the AFC at Super Bowl 50?")
    assert result.passages[0].source == "squad/Super_Bowl_50"
    assert not result.abstained
    c = result.citations[0]
    assert pipeline.index.document(c.document_id).text[c.start:c.end] == c.text
    filtered = pipeline.search("Super Bowl 50", filters={"source": "squad/Super_Bowl_50"})
    assert filtered and all(p.source == "squad/Super_Bowl_50" for p in filtered)

    reloaded = load_index(pipeline.settings.index_dir, pipeline.index_config)
    assert describe(reloaded.segments[0].index.vectors)["type"] == "ivf-flat" and reloaded.chunk_count == n_chunks
    # A delete marks the document deleted; each segment's vector index suits its own size, so a
    # small write is a flat segment beside the IVF one.
    pipeline.delete_document(docs[0].id)
    assert pipeline.index.chunk_count < n_chunks
    assert all(p.source != docs[0].source for p in pipeline.search("Super Bowl 50", 10))
    pipeline.put_documents([make_document("A short note about lighthouses.", source="note")])
    assert [describe(s.index.vectors)["type"] for s in pipeline.index.segments] == ["ivf-flat", "flat"]


def test_a_loaded_ivf_is_stored_again_as_itself_even_after_its_file_is_gone(real_vectors, tmp_path):
    from rag.vectors import write_vector_index

    corpus, queries = real_vectors
    first = tmp_path / "a.faiss"
    faiss.write_index(build_vector_index(corpus, VectorIndexPolicy(kind="ivf")), str(first))
    loaded = read_vector_index(str(first))
    for name in ("b.faiss", "c.faiss"):
        write_vector_index(loaded, str(tmp_path / name), str(first))
        again = faiss.read_index(str(tmp_path / name))  # fully in memory: no external list file
        assert again.ntotal == len(corpus)
        assert search(again, queries[0], 10)[1].tolist() == search(loaded, queries[0], 10)[1].tolist()
        first.unlink(missing_ok=True)  # the second round: the loaded index's own file is gone
