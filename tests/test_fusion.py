"""Retrieval and fusion with the stand-in embedder (fast tier): each mode's ranking, fusion of the
two candidate lists, filters applied before top-k, and offsets that slice the stored text."""
from __future__ import annotations

import pytest

from rag.config import FusionMethod, RetrievalMode
from rag.documents import make_document
from rag.retrieval import Retriever

TEXTS = {
    "harbour": "The harbour of Valdera was rebuilt in 1887 after a great storm destroyed the old piers.",
    "cats": "Cats sleep for most of the day. At night they hunt mice in the old barns.",
    "trains": "The night train from Valdera to the capital takes nine hours and stops twice.",
    "storm": "A storm warning was issued for the coast; fishermen stayed in port.",
}


@pytest.fixture
def index(fake_pipeline):
    p = fake_pipeline()
    p.ingest_documents([make_document(t, source=f"docs/{k}.txt", id=k) for k, t in TEXTS.items()])
    return p


def _ids(passages):
    return [p.document_id for p in passages]


def test_every_mode_finds_the_document_that_shares_the_words(index):
    for mode in RetrievalMode:
        assert _ids(index.search("when was the Valdera harbour rebuilt", 4, mode=mode))[0] == "harbour", mode


def test_lexical_search_never_returns_chunks_without_a_query_term(index):
    assert set(_ids(index.search("mice barns", 4, mode="lexical"))) == {"cats"}


def test_hybrid_fuses_both_candidate_lists_with_scores_in_order(index):
    passages = index.search("night train to the capital", 4)
    assert _ids(passages)[0] == "trains"
    scores = [p.score for p in passages]
    assert scores == sorted(scores, reverse=True) and [p.rank for p in passages] == [1, 2, 3, 4]


def test_reciprocal_rank_fusion_is_selectable(index):
    rrf = Retriever(index.embedder, fusion=FusionMethod.rrf)
    passages = rrf.search(index.index, "storm damage at the harbour of Valdera", 4)
    assert {_ids(passages)[0], _ids(passages)[1]} == {"harbour", "storm"}
    assert all(p.score <= 2 / 61 for p in passages)  # two lists, 1/(60 + rank) each


def test_filters_apply_before_top_k(index):
    passages = index.search("Valdera harbour storm", 1, filters={"source": "docs/t*"})
    assert _ids(passages) == ["trains"]
    assert index.search("Valdera", 5, filters={"document_id": ["cats", "storm"]}) != []
    assert set(_ids(index.search("Valdera", 5, filters={"document_id": ["cats", "storm"]}))) <= {"cats", "storm"}
    assert index.search("Valdera", 5, filters={"source": "nowhere/*"}) == []


def test_passage_offsets_slice_the_stored_text(index):
    for p in index.search("storm", 4):
        assert index.index.document(p.document_id).text[p.start:p.end] == p.text


def test_best_sentence_match_prefers_the_chunk_whose_one_sentence_holds_the_question(fake_pipeline):
    import numpy as np

    from rag.retrieval import best_sentence_match
    from rag.scoring import query_terms

    texts = {"spread": "The outbreak began in the winter. Officials counted the cases. The period after that was "
                       "calm. Incubation was studied elsewhere.",
             "focused": "Officials measured the incubation period of the outbreak in the winter. It was short."}
    p = fake_pipeline()
    p.ingest_documents([make_document(t, source=f"docs/{k}.txt", id=k) for k, t in texts.items()])
    idx, question = p.index, "What was the incubation period of the outbreak?"
    rows = np.arange(len(idx.chunks))
    owners = [idx.documents[idx.chunks.locate(r)[1]].id for r in rows.tolist()]
    match = dict(zip(owners, best_sentence_match(idx, rows, query_terms(question, idx.bm25)).tolist()))
    assert match["focused"] > match["spread"] > 0
    # Weighted alone, the signal ranks first the chunk with one sentence holding the question's words together.
    only_match = Retriever(p.embedder, dense_weight=0.0, sentence_weight=0.0, match_weight=1.0)
    assert _ids(only_match.search(idx, question, 2))[0] == "focused"
    assert best_sentence_match(idx, rows, query_terms("zebra", idx.bm25)).tolist() == [0.0] * len(rows)


def test_match_weight_must_leave_bm25_a_non_negative_share(index):
    with pytest.raises(ValueError, match="match_weight"):
        Retriever(index.embedder, dense_weight=0.5, sentence_weight=0.4, match_weight=0.2)
