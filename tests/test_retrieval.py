"""Retrieval over the seed index: dense, lexical and hybrid modes, passages, top_k, filters, fusion."""
from __future__ import annotations

import numpy as np
import pytest

from rag.documents import make_document
from rag.errors import InvalidInputError

from support import SEED_FILE, SEEDS, check_passage

PESKOV_QUESTION = "what did Peskov say"


def _peskov_chunk_ids(pipeline) -> set[str]:
    ids = {c.id for c in pipeline.index.chunks if "Peskov" in c.text}
    assert ids
    return ids


@pytest.mark.parametrize("mode", ["dense", "lexical", "hybrid"])
def test_each_mode_retrieves_the_peskov_chunk(seed_pipeline, mode):
    passages = seed_pipeline.search(PESKOV_QUESTION, 3, mode=mode)
    assert passages
    assert {p.chunk_id for p in passages} & _peskov_chunk_ids(seed_pipeline), \
        f"{mode}: top 3 are {[p.text[:60] for p in passages]}"


@pytest.mark.parametrize("mode", ["dense", "lexical", "hybrid"])
def test_passages_carry_all_fields_and_ranks(seed_pipeline, mode):
    passages = seed_pipeline.search("Russia and Ukraine peace plan", 4, mode=mode)
    assert [p.rank for p in passages] == [1, 2, 3, 4]
    fused = [p.fused for p in passages]  # ranked by the retriever's own (per-question) score
    assert fused == sorted(fused, reverse=True)
    assert all(0.0 <= p.score <= 1.0 for p in passages), "score: a calibrated probability"
    assert len({p.chunk_id for p in passages}) == 4
    for p in passages:
        d = p.model_dump(mode="json", exclude_none=True)
        check_passage(d, seed_pipeline)
        assert d["source"].endswith(SEED_FILE)
        assert d["title"] == "Russia resists proposed Anglo-French peacekeeping plan in Ukraine"


@pytest.mark.parametrize("top_k", [1, 3, 5])
def test_top_k_is_honoured(seed_pipeline, top_k):
    assert len(seed_pipeline.search("Ukraine NATO membership", top_k)) == top_k


def test_top_k_larger_than_the_index_returns_every_chunk_once(seed_pipeline):
    n = len(seed_pipeline.index.chunks)
    passages = seed_pipeline.search("Ukraine", 50, mode="dense")
    assert len(passages) == n
    assert [p.rank for p in passages] == list(range(1, n + 1))


def test_invalid_queries_are_refused(seed_pipeline):
    with pytest.raises(InvalidInputError):
        seed_pipeline.search("   ", 3)
    with pytest.raises(InvalidInputError, match="top_k"):
        seed_pipeline.retriever.search(seed_pipeline.index, "Ukraine", 0)
    with pytest.raises(InvalidInputError, match="top_k"):
        seed_pipeline.search("Ukraine", 0)  # not silently replaced by the default
    with pytest.raises(InvalidInputError, match="unknown filter"):
        seed_pipeline.search("Ukraine", 3, filters={"author": "x"})


@pytest.fixture(scope="module")
def two_doc_pipeline(tmp_path_factory, embedder):
    from rag.config import Settings
    from rag.pipeline import Pipeline

    pipeline = Pipeline(Settings(data_dir=tmp_path_factory.mktemp("two-docs"), seed_dir=SEEDS), embedder=embedder)
    pipeline.ingest([SEEDS])
    pipeline.ingest_documents([make_document(
        "Ukraine exports of sunflower oil rose in 2024.\nPeskov is also the name of a small village in this fictional report.\n",
        source="other/farming.txt", title="Farming report")])
    return pipeline


@pytest.mark.parametrize("mode", ["dense", "lexical", "hybrid"])
def test_source_filter_restricts_results(two_doc_pipeline, mode):
    everything = two_doc_pipeline.search("Peskov Ukraine", 10, mode=mode)
    assert {p.source for p in everything} == {"other/farming.txt", next(
        d.source for d in two_doc_pipeline.index.live_documents() if d.source != "other/farming.txt")}
    only_other = two_doc_pipeline.search("Peskov Ukraine", 10, mode=mode, filters={"source": "other/*"})
    assert only_other and {p.source for p in only_other} == {"other/farming.txt"}
    assert [p.rank for p in only_other] == list(range(1, len(only_other) + 1))
    only_seed = two_doc_pipeline.search("Peskov Ukraine", 10, mode=mode, filters={"source": ["*" + SEED_FILE]})
    assert only_seed and all(p.source.endswith(SEED_FILE) for p in only_seed)


def test_document_id_filter_and_filters_matching_nothing(two_doc_pipeline):
    other = next(d for d in two_doc_pipeline.index.live_documents() if d.source == "other/farming.txt")
    passages = two_doc_pipeline.search("sunflower oil", 5, filters={"document_id": other.id})
    assert passages and {p.document_id for p in passages} == {other.id}
    assert two_doc_pipeline.search("sunflower oil", 5, filters={"source": "nowhere/*"}) == []


def test_rrf_fusion_setting(make_seed_pipeline, seed_pipeline):
    rrf = make_seed_pipeline(fusion="rrf", rrf_k=60)
    passages = rrf.search(PESKOV_QUESTION, 3)
    assert {p.chunk_id for p in passages} & _peskov_chunk_ids(rrf)
    # Reciprocal-rank fusion scores (what candidates are ranked by): each list contributes at most 1/(k+1).
    assert all(0 < p.fused <= 2 / 61 + 1e-9 for p in passages)
    assert [p.rank for p in passages] == [1, 2, 3]
    # The weighted default fuses on a [0, 1] scale.
    weighted = seed_pipeline.search(PESKOV_QUESTION, 3)
    assert weighted[0].fused > 2 / 61
    # Each chunk scores the sum of 1/(k + rank) over the dense and the lexical ranking.
    n = len(rrf.index.chunks)
    expected: dict[str, float] = {}
    for mode in ("dense", "lexical"):
        for p in rrf.search(PESKOV_QUESTION, n, mode=mode):
            expected[p.chunk_id] = expected.get(p.chunk_id, 0.0) + 1 / (60 + p.rank)
    best = sorted(expected.items(), key=lambda kv: -kv[1])[:3]
    assert sorted(p.fused for p in passages) == pytest.approx(sorted(s for _, s in best))


@pytest.mark.parametrize("query", ["What did Peskov say?", "Peskov Peskov Kremlin", "zzzunknownword Lavrov", "the"])
def test_bm25_scores_equal_bm25s_own_scoring(seed_pipeline, query):
    from rag.lexical import tokenize

    import bm25s

    index = seed_pipeline.index
    bm25 = index.bm25
    # bm25s over the same tokens (each chunk's title words in front) is the reference implementation.
    titles = dict(zip({d.title for d in index.live_documents()},
                      tokenize(list({d.title for d in index.live_documents()}))))
    corpus = [titles[index.documents[index.chunks.locate(r)[1]].title] + tokenize([index.chunks.text(r)])[0]
              for r in range(len(index.chunks))]
    model = bm25s.BM25(k1=0.9, b=0.4, method="lucene")
    model.index([t or ["\u2205"] for t in corpus], show_progress=False)
    ids = model.get_tokens_ids(tokenize([query])[0])
    expected = model.get_scores(ids) if ids else np.zeros(bm25.size)
    np.testing.assert_allclose(bm25.scores(query), expected, rtol=1e-5, atol=1e-7)
