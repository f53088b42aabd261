"""BM25 tokens (fast tier): the project's tokenizer gives exactly bm25s's tokens."""
from __future__ import annotations

import bm25s
import pytest

from rag.lexical import BM25Index, _stemmer, tokenize

TEXTS = ["What did Peskov say about the Anglo-French plan?", "", "a", "The THE the", "x2 42 Straße naïve café",
         "Endothelial cells [2] . (Figure 3, panel B), a W—shaped curve; don't won't it's",
         "Running runners ran; studies studied studying. SARS-CoV-2 and COVID-19 in 2020–2021."]


def test_tokens_equal_bm25s_tokens():
    expected = bm25s.tokenize(TEXTS, lower=True, stopwords="en_plus", stemmer=_stemmer(), return_ids=False,
                              show_progress=False)
    assert tokenize(TEXTS) == expected
    assert tokenize(["what is it that they did"]) == [[]]  # question and stop words only


@pytest.mark.parametrize("texts", [[], ["only stop words: the of and"], ["harbour storm", "cats at night"]])
def test_scores_line_up_with_chunks_and_an_empty_corpus_is_normal(texts):
    bm25 = BM25Index.build(texts)
    scores = bm25.scores("harbour storm")
    assert len(scores) == len(texts) == bm25.size
    if len(texts) == 2:
        assert scores[0] > 0 and scores[1] == 0


def test_long_postings_score_the_same_from_the_saturation_cache_and_it_stays_bounded(monkeypatch):
    """Terms with long postings keep their saturated tf per segment (by average length): a second
    question scores exactly as the first, as an index without the cache does, and the cache evicts."""
    import random

    import numpy as np

    rng = random.Random(3)
    words = ["harbour", "storm", "night", "vessel", "crew", "light", "tide"]
    texts = [" ".join(rng.choice(words) for _ in range(rng.randint(1, 30))) for _ in range(6000)]
    bm25 = BM25Index.build(texts)
    uncached = BM25Index.build(texts)
    monkeypatch.setattr(uncached, "SATURATED_MIN", 10**9)
    first = bm25.scores("harbour storm tide")
    assert bm25._saturated, "long postings were cached"
    np.testing.assert_array_equal(bm25.scores("harbour storm tide"), first)
    np.testing.assert_allclose(first, uncached.scores("harbour storm tide"), rtol=1e-6)
    assert not uncached._saturated
    monkeypatch.setattr(bm25, "SATURATED_BYTES", 1)
    bm25.scores("night vessel crew light")
    assert len(bm25._saturated) == 1  # evicted down to the newest entry
