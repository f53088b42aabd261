"""Sentence terms stored at ingest (fast tier): the array form of the best-sentence lexical match gives
what tokenizing the sentences gives, reads and merges keep every sentence's terms in order, and an
index written before terms were stored searches exactly as one with them."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
from hypothesis import given, settings, strategies as st

from rag.documents import Document
from rag.lexical import BM25Index, tokenize
from rag.merge import merge_segments
from rag.retrieval import best_sentence_match
from rag.scoring import query_terms
from rag.segments import Segment, SegmentedIndex
from rag.sentence_terms import VERSION, SentenceTerms, merged
from rag.snapshot import load_segment, write_segment
from rag.vectors import VectorIndexPolicy

WORDS = ["incubation", "period", "virus", "days", "patients", "recover", "the", "of", "said", "Peskov",
         "receptor", "cells", "lung", "ACE2", "five", "what", "did", "how", "many", "treatment"]
SENTENCE = st.lists(st.sampled_from(WORDS), max_size=14).map(" ".join)


@settings(max_examples=150, deadline=None)
@given(sentences=st.lists(SENTENCE, min_size=1, max_size=25), question=st.lists(st.sampled_from(WORDS), min_size=1,
                                                                                 max_size=8).map(" ".join),
       picks=st.data())
def test_the_array_match_equals_the_tokenized_one(sentences, question, picks):
    bm25 = BM25Index.build(sentences, None)
    terms = query_terms(question + "?", bm25)
    stored = SentenceTerms.of_texts(sentences)
    rows = np.asarray(picks.draw(st.lists(st.integers(0, len(sentences) - 1), max_size=30)), dtype=np.int64)
    hashes, owner = stored.read(rows)
    fast = terms.sentence_matches(hashes, owner, len(rows))
    slow = [terms.sentence_match(tuple(tokenize([sentences[r]])[0])) for r in rows.tolist()]
    np.testing.assert_allclose(fast, slow, rtol=0, atol=1e-12)


def test_the_array_match_on_each_branch_of_the_rule():
    """Coverage alone with one question term (even next to an asking verb the question pairs it
    with), plus half the phrase share with two or more, adjacent or not, repeated or not."""
    sentences = ["Peskov claimed nothing.", "The incubation period of the virus.", "Virus cells; the incubation period.",
                 "Period period incubation incubation.", "Nothing here.", "Incubation of the virus period."]
    bm25 = BM25Index.build(sentences + ["Lung cells recover.", "Patients recover in days."], None)
    for question in ("What did Peskov claim?", "How long is the incubation period of the virus?",
                     "incubation period incubation period"):
        terms = query_terms(question, bm25)
        hashes, owner = SentenceTerms.of_texts(sentences).read(np.arange(len(sentences)))
        fast = terms.sentence_matches(hashes, owner, len(sentences))
        slow = [terms.sentence_match(tuple(tokenize([t])[0])) for t in sentences]
        np.testing.assert_allclose(fast, slow, rtol=0, atol=1e-12)
        assert len(set(np.round(fast, 9))) > 1  # the sentences do score differently


def test_read_keeps_each_sentences_terms_in_order_whatever_the_rows():
    texts = ["alpha beta gamma", "", "delta", "epsilon zeta eta theta", "iota kappa", "lambda"]
    stored = SentenceTerms.of_texts(texts)
    for rows in ([0, 1, 2, 3, 4, 5], [5, 0, 3], [3, 3, 1, 4], [], [2, 1]):
        hashes, owner = stored.read(np.asarray(rows, dtype=np.int64))
        expected = [(i, t) for i, r in enumerate(rows) for t in SentenceTerms.of_texts([texts[r]]).hashes.tolist()]
        assert list(zip(owner.tolist(), hashes.tolist())) == expected


def test_merged_terms_are_the_kept_sentences_terms(tmp_path):
    a = SentenceTerms.of_texts(["one two", "three", "four five six", ""])
    b = SentenceTerms.of_texts(["seven", "eight nine"])
    keep = [np.asarray([0, 2, 3]), np.asarray([1])]
    expected = SentenceTerms.of_texts(["one two", "four five six", "", "eight nine"])
    for out in (None, tmp_path):
        m = merged([(a, keep[0]), (b, keep[1])], out)
        assert np.asarray(m.indptr).tolist() == np.asarray(expected.indptr).tolist()
        assert np.asarray(m.hashes).tolist() == np.asarray(expected.hashes).tolist()


def _without_terms(view: SegmentedIndex) -> SegmentedIndex:
    return SegmentedIndex(view.config, tuple(Segment(dataclasses.replace(s.index, sentence_terms=None), s.deleted, s.name)
                                             for s in view.segments), view.journal_seq, view.generation)


def test_an_index_written_without_terms_searches_exactly_the_same(fake_pipeline, tmp_path):
    p = fake_pipeline()
    docs = [Document(id=f"d{i}", source=f"s{i}", title=f"Doc {i}",
                     text=f"Report {i}. The incubation period was {i} days in patients. "
                          f"Cells in the lung express the receptor in case {i}.") for i in range(12)]
    p.ingest_documents(docs[:8])
    p.put_documents(docs[8:])  # a second segment
    view = p.index
    assert len(view.segments) >= 2 and all(s.index.sentence_terms is not None for s in view.segments)
    old = _without_terms(view)
    rows = np.arange(view.rows)
    for q in ("How long is the incubation period?", "Which cells express the receptor?", "Report 7"):
        terms = query_terms(q, view.bm25)
        assert best_sentence_match(view, rows, terms).tolist() == \
               best_sentence_match(old, rows, terms).tolist()
        assert [x.chunk_id for x in p.retriever.search(view, q, 5)] == [x.chunk_id for x in p.retriever.search(old, q, 5)]

    # An older segment on disk loads without terms, and a merge with it stores them for every sentence.
    name = write_segment(old.segments[0].index, tmp_path)
    manifest = json.loads((tmp_path / name / "manifest.json").read_text())
    assert manifest["sentence_terms"] is None and load_segment(tmp_path / name).sentence_terms is None
    name = write_segment(view.segments[0].index, tmp_path)
    assert json.loads((tmp_path / name / "manifest.json").read_text())["sentence_terms"] == VERSION
    assert load_segment(tmp_path / name).sentence_terms is not None
    one = merge_segments(old.segments, view.config, VectorIndexPolicy())
    texts = [one.documents[d].text[a:b] for d, a, b in np.asarray(one.sentences).tolist()]
    assert np.asarray(one.sentence_terms.hashes).tolist() == SentenceTerms.of_texts(texts).hashes.tolist()
