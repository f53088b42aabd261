"""Each evaluation metric on a hand-made case."""
from __future__ import annotations

import math

import pytest

from eval import metrics as m

DOCS = {"d1": "Paris is the capital of France. It is large.", "d2": "Berlin is in Germany."}


def cite(i: int, doc: str, start: int, end: int, text: str | None = None) -> dict:
    return {"id": i, "document_id": doc, "start": start, "end": end, "text": DOCS[doc][start:end] if text is None else text}


def test_normalize_answer_follows_squad():
    assert m.normalize_answer("The  Eiffel-Tower!") == "eiffeltower"
    assert m.normalize_answer("An apple, a pear") == "apple pear"


def test_exact_match_and_f1():
    assert m.exact_match("the Denver Broncos", ["Denver Broncos"]) == 1.0
    assert m.exact_match("Broncos", ["Denver Broncos"]) == 0.0
    assert m.f1("Denver Broncos won", ["Denver Broncos"]) == pytest.approx(0.8)
    assert m.f1("nothing here", ["Denver Broncos"]) == 0.0
    assert m.f1("x", []) == 0.0


def test_containment_uses_word_boundaries():
    assert m.contains_answer("It was Peskov [1] who said no.", ["peskov"]) == 1.0
    assert m.contains_answer("The year 20300 was late.", ["2030"]) == 0.0
    assert m.contains_answer("anything", []) == 0.0


def test_word_count_ignores_markers():
    assert m.word_count("One two three. [1] Four [2, 3]") == 4


def test_ranked_documents_dedupes_in_order():
    passages = [{"document_id": "a"}, {"document_id": "b"}, {"document_id": "a"}, {"document_id": "c"}]
    assert m.ranked_documents(passages) == ["a", "b", "c"]


def test_hit_mrr_ndcg():
    docs = ["x", "gold", "y"]
    assert m.hit_at(docs, ["gold"], 1) == 0.0
    assert m.hit_at(docs, ["gold"], 2) == 1.0
    assert m.mrr_at(docs, ["gold"], 10) == 0.5
    assert m.mrr_at(docs, ["gold"], 1) == 0.0
    assert m.ndcg_at(docs, ["gold"], 10) == pytest.approx(1 / math.log2(3))
    assert m.ndcg_at(["gold"], ["gold"], 10) == 1.0
    assert m.ndcg_at(["x"], ["gold"], 10) == 0.0


def test_citation_validity():
    good = [cite(1, "d1", 0, 31), cite(2, "d2", 0, 21)]
    assert m.citations_valid("Paris [1]. Berlin [2].", good, DOCS)
    assert m.citations_valid("Paris [1]. Berlin [2].", good, None)
    assert not m.citations_valid("Paris [1].", good, DOCS), "citation 2 unused"
    assert not m.citations_valid("Berlin [2]. Paris [1].", good, DOCS), "not numbered by first use"
    assert not m.citations_valid("Paris [1] [3].", good, DOCS), "marker resolves to nothing"
    wrong_offsets = [cite(1, "d1", 1, 31, text=DOCS["d1"][0:31])]
    assert not m.citations_valid("Paris [1].", wrong_offsets, DOCS)
    assert m.citations_valid("I don't know.", [], DOCS)


def test_citation_support():
    assert m.citation_supports([cite(1, "d1", 0, 31)], ["capital of France"]) == 1.0
    assert m.citation_supports([cite(1, "d2", 0, 21)], ["capital of France"]) == 0.0


def test_abstention_precision_recall():
    scores = m.abstention_scores(abstained=[True, True, False, False], answerable=[False, True, False, True])
    assert scores["abstention_precision"] == 0.5
    assert scores["abstention_recall"] == 0.5
    assert scores["abstention_rate"] == 0.5
    assert m.abstention_scores([False], [True])["abstention_precision"] is None


def test_percentiles():
    xs = [float(x) for x in range(1, 101)]
    assert m.percentile(xs, 50) == pytest.approx(50.5)
    assert m.percentile(xs, 99) == pytest.approx(99.01)
    assert m.percentile([], 50) is None
    assert m.mean([1, 2, 3]) == 2


def test_citation_validity_counts_every_bracketed_number_in_the_answer():
    good = [cite(1, "d1", 0, 31), cite(2, "d2", 0, 21)]
    assert m.citations_valid("Paris (4) [1]. Berlin (1-3) [2].", good, DOCS), "neutralised numbers are text"
    assert not m.citations_valid("Paris [1-3] [1]. Berlin [2].", good, DOCS), "a range is no marker"
    assert not m.citations_valid("Paris [12a] [1]. Berlin [2].", good, DOCS)
    assert m.stray_brackets("cells [2] and [29, 30], see [1-3] or [a]") == ["[1-3]"]
