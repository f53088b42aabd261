"""BM25 with global statistics: each shard scores its chunks with the corpus-wide number of chunks,
total length and per-term document frequencies, so a sharded corpus scores exactly as one index.

The coordinator sums the shards' statistics (`rag.lexical.CorpusStats`) for the query's terms and
hands the sum back to every shard, which scores its own segments' term-frequency postings with it
(the same statistics the segments of one index share).
"""
from __future__ import annotations

from typing import Callable, Iterable, Sequence

import numpy as np

from rag.lexical import CorpusStats


LexStats = CorpusStats  # chunks, total length, per-term df (titles included) and text df; they add up


class ShardLexicon:
    """One shard's index as BM25 with given statistics: its own term-frequency postings
    (rag.lexical), deleted chunks scoring 0."""

    def __init__(self, index):
        self.index = index
        self.size = len(index.chunks)

    def stats(self, terms: Iterable[str]) -> LexStats:
        """This shard's statistics for (already tokenized) `terms`."""
        return self.index.bm25.term_stats(list(set(terms))) if self.size else LexStats()

    def scores(self, tokens: Sequence[str], stats: LexStats) -> np.ndarray:
        """BM25 of every chunk row for the query's tokens under `stats`."""
        return self.index.bm25.token_scores(list(tokens), stats)


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
            self._stats = LexStats(self._stats.chunks, self._stats.length, {**self._stats.df, **extra.df},
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
        return {t: s.idf(s.df.get(t, 0)) if s.chunks else 0.0 for t in terms}

    def document_frequency(self, term: str) -> int:
        return self._cover([term]).text_df.get(term, 0)
