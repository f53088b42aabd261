"""BM25 with global statistics: each shard scores its chunks with the corpus-wide number of chunks,
total length and per-term document frequencies, so a sharded corpus scores exactly as one index.

The coordinator sums the shards' `LexStats` for the query's terms and hands the sum back to every
shard. `ShardLexicon` gives a shard's index that interface: the index's own `bm25.stats` /
`bm25.scores(query, stats=...)` when its BM25 offers them (term-frequency postings), else term
frequencies counted here from the index's chunks, once per index (the same tokens, titles and
placeholder token as `rag.build` indexes, and bm25s's Lucene formula).
"""
from __future__ import annotations

import math
import weakref
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

import numpy as np

from rag.index import Index
from rag.lexical import tokenize

EMPTY_TOKEN = "\u2205"  # what rag.lexical indexes for a chunk without any token


@dataclass(frozen=True)
class LexStats:
    """Corpus statistics for some terms: chunks, total indexed length, and per term the chunks
    containing it as scored (titles included) and in chunk text alone (for rag.scoring's IDF)."""

    n: int = 0
    total_len: int = 0
    df: dict[str, int] = field(default_factory=dict)
    text_df: dict[str, int] = field(default_factory=dict)

    def __add__(self, other: "LexStats") -> "LexStats":
        def add(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
            return {t: a.get(t, 0) + b.get(t, 0) for t in a.keys() | b.keys()}

        return LexStats(self.n + other.n, self.total_len + other.total_len, add(self.df, other.df),
                        add(self.text_df, other.text_df))

    def __radd__(self, other):  # sum() starts from 0
        return self if other == 0 else NotImplemented

    def idf(self, df: int) -> float:
        """Lucene's IDF, as bm25s and rag.lexical compute it."""
        n = max(self.n, 1)
        return math.log(1.0 + (n - df + 0.5) / (df + 0.5))


class _Postings:
    """Term frequencies of one index's chunks, counted from their tokens (until BM25 stores them)."""

    def __init__(self, index: Index):
        texts = [index.chunks.text(r) for r in range(len(index.chunks))]
        tokens = tokenize(texts)
        if index.config.index_titles:
            titles = [index.documents[int(d)].title for d in index.chunk_doc_row.tolist()]
            title_tokens = dict(zip(set(titles), tokenize(list(set(titles)))))
            tokens = [title_tokens[t] + toks for t, toks in zip(titles, tokens)]
        tokens = [t if t else [EMPTY_TOKEN] for t in tokens]
        self.lengths = np.array([len(t) for t in tokens], dtype=np.float64)
        rows: dict[str, list[int]] = {}
        tfs: dict[str, list[int]] = {}
        for row, toks in enumerate(tokens):
            for term, tf in Counter(toks).items():
                rows.setdefault(term, []).append(row)
                tfs.setdefault(term, []).append(tf)
        self.postings = {t: (np.asarray(rows[t], dtype=np.int64), np.asarray(tfs[t], dtype=np.float64)) for t in rows}
        model = getattr(index.bm25, "_model", None)
        self.k1, self.b = (float(model.k1), float(model.b)) if model is not None else (0.9, 0.4)


_POSTINGS: "weakref.WeakKeyDictionary[object, _Postings]" = weakref.WeakKeyDictionary()


class ShardLexicon:
    """One shard's index as BM25 with given statistics."""

    def __init__(self, index: Index):
        self.index = index
        self.size = len(index.chunks)
        self._p = _POSTINGS.get(index.bm25)  # one BM25 per index build: the key
        if self._p is None and self.size:
            self._p = _POSTINGS.setdefault(index.bm25, _Postings(index))

    def stats(self, terms: Iterable[str]) -> LexStats:
        """This shard's statistics for (already tokenized) `terms`."""
        terms = set(terms)
        if not self.size:
            return LexStats()
        df = {t: len(self._p.postings[t][0]) for t in terms if t in self._p.postings}
        text_df = {t: n for t in terms if (n := self.index.bm25.document_frequency(t))}
        return LexStats(self.size, int(self._p.lengths.sum()), df, text_df)

    def scores(self, tokens: Sequence[str], stats: LexStats) -> np.ndarray:
        """BM25 of every chunk for the query's tokens under `stats` (a repeated token counts twice,
        as in bm25s); float32 like the index's own scores."""
        out = np.zeros(self.size, dtype=np.float32)
        if not self.size or not stats.n:
            return out
        p = self._p
        avg = stats.total_len / stats.n
        norm = p.k1 * ((1.0 - p.b) + p.b * p.lengths / avg)
        for t in tokens:
            posting = p.postings.get(t)
            if posting is None:
                continue
            rows, tf = posting
            out[rows] += (stats.idf(stats.df.get(t, 0)) * tf / (norm[rows] + tf)).astype(np.float32)
        return out


class GlobalLexicon:
    """What rag.scoring and the generators ask of `index.bm25` (IDF, document frequency, scored IDF),
    answered from the corpus-wide statistics; terms outside them are looked up with `lookup`."""

    def __init__(self, stats: LexStats, scores: np.ndarray, lookup: Callable[[set[str]], LexStats] | None = None,
                 known: Iterable[str] = ()):
        self._stats = stats
        self._scores = scores
        self._lookup = lookup
        self._known = set(known)
        self.size = len(scores)

    def _cover(self, terms: Iterable[str]) -> LexStats:
        missing = set(terms) - self._known
        if missing and self._lookup is not None:
            extra = self._lookup(missing)
            self._stats = LexStats(self._stats.n, self._stats.total_len, {**self._stats.df, **extra.df},
                                   {**self._stats.text_df, **extra.text_df})
            self._known |= missing
        return self._stats

    def scores(self, query: str) -> np.ndarray:  # the pool's chunks, scored under global statistics
        return self._scores

    def idf(self, terms) -> dict[str, float]:
        s = self._cover(terms)
        return {t: s.idf(s.text_df.get(t, 0)) for t in terms}

    def scored_idf(self, terms) -> dict[str, float]:
        s = self._cover(terms)
        return {t: s.idf(s.df.get(t, 0)) if s.n else 0.0 for t in terms}

    def document_frequency(self, term: str) -> int:
        return self._cover([term]).text_df.get(term, 0)
