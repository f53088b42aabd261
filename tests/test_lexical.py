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


def _sort_merged(parts):
    """The merge as it was before the counting merge (a stable sort of every posting by term): the
    reference the counting merge must reproduce array for array."""
    import numpy as np

    vocab, terms, rows, tfs, in_text, lengths, offset = {}, [], [], [], [], [], 0
    for part, keep in parts:
        new_row = np.full(part.size, -1, dtype=np.int32)
        new_row[keep] = offset + np.arange(len(keep), dtype=np.int32)
        term_map = np.array([vocab.setdefault(t, len(vocab)) for t in part.terms()], dtype=np.int32)
        part_rows = new_row[np.asarray(part.rows[:])]
        kept = part_rows >= 0
        terms.append(np.repeat(term_map, np.diff(part.indptr))[kept])
        rows.append(part_rows[kept])
        tfs.append(np.asarray(part.tf[:])[kept])
        in_text.append(np.asarray(part.in_text[:])[kept])
        lengths.append(part.lengths[keep])
        offset += len(keep)
    term_of = np.concatenate(terms)
    order = np.argsort(term_of, kind="stable")
    indptr = np.searchsorted(term_of[order], np.arange(len(vocab) + 1)).astype(np.int64)
    in_text_all = np.concatenate(in_text)[order]
    running = np.concatenate(([0], np.cumsum(in_text_all, dtype=np.int64)))
    return (vocab, indptr, np.concatenate(rows)[order], np.concatenate(tfs)[order], in_text_all,
            np.concatenate(lengths), (running[indptr[1:]] - running[indptr[:-1]]).astype(np.int32))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_counting_merge_of_postings_equals_the_sorting_merge_and_a_fresh_build(tmp_path, seed):
    import random

    import numpy as np

    rng = random.Random(seed)
    words = ["harbour", "storm", "light", "cats", "sleeping", "ships", "tides", "lamps", "keeper", "rocks",
             "winter", "gulls", "rope", "the", "of"]
    parts, texts, titles, kept_texts, kept_titles = [], [], [], [], []
    for p in range(rng.randint(1, 5)):
        n = rng.randint(0, 30)
        texts = [" ".join(rng.choice(words) for _ in range(rng.randint(0, 12))) for _ in range(n)]
        titles = [rng.choice(["Harbour", "Cats", "Winter rocks", "The"]) for _ in range(n)]
        index = BM25Index.build(texts, titles)
        if p % 2:  # one read from disk, as a merge reads segments
            index.save(tmp_path / f"p{p}")
            index = BM25Index.load(tmp_path / f"p{p}")
        keep = np.array(sorted(rng.sample(range(n), rng.randint(0, n))), dtype=np.int64)
        parts.append((index, keep))
        kept_texts += [texts[i] for i in keep]
        kept_titles += [titles[i] for i in keep]
    merged = BM25Index.merged(parts)
    vocab, indptr, rows, tf, in_text, lengths, text_df = _sort_merged(parts)
    assert merged.vocab == vocab
    for got, want in [(merged.indptr, indptr), (merged.rows, rows), (merged.tf, tf), (merged.in_text, in_text),
                      (merged.lengths, lengths), (merged.text_df, text_df)]:
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got, want)
    fresh = BM25Index.build(kept_texts, kept_titles)
    for term, tid in fresh.vocab.items():
        m = merged.vocab[term]
        a, b, c, d = fresh.indptr[tid], fresh.indptr[tid + 1], merged.indptr[m], merged.indptr[m + 1]
        np.testing.assert_array_equal(merged.rows[c:d], fresh.rows[a:b])
        np.testing.assert_array_equal(merged.tf[c:d], fresh.tf[a:b])
        np.testing.assert_array_equal(merged.in_text[c:d], fresh.in_text[a:b])
    assert int(merged.indptr[-1]) == int(fresh.indptr[-1])  # terms of deleted chunks alone: empty lists
    np.testing.assert_array_equal(merged.lengths, fresh.lengths)
