"""Retrieval: dense (FAISS), lexical (BM25) and hybrid fusion by chunk row, within a filter's rows."""
from __future__ import annotations

import weakref

import numpy as np
from pydantic import BaseModel, Field, field_serializer

from .config import FusionMethod, RetrievalMode
from .embedding import Embedder
from .documents import page_of
from .errors import InvalidInputError
from .filters import Filter
from .index import Index
from .lexical import tokenize, tokenize_cached
from .scoring import PASSAGE_MODEL, QueryTerms, query_terms


# Filters live in rag.filters; `Filters` is kept as the name the pipeline imports.
Filters = Filter


class Passage(BaseModel):
    """A retrieved chunk: the result type of search, served as is by the API and read by evaluation."""

    chunk_id: str
    document_id: str
    source: str
    title: str
    text: str = Field(description="Exactly the document's stored text[start:end].")
    start: int
    end: int
    score: float
    rank: int
    row: int = Field(-1, exclude=True, repr=False)  # chunk row in the index snapshot
    dense_score: float | None = Field(None, exclude=True, repr=False)  # cosine with the query, when computed
    page: int | None = None  # 1-based page (PDF) or slide (pptx) where the passage starts
    fused: float = Field(0.0, exclude=True, repr=False)  # the fusion score it was ranked by (per-question scale)
    signals: dict = Field(default_factory=dict, exclude=True, repr=False)  # the calibrated score's inputs (scoring.py)

    @field_serializer("score")
    def _rounded(self, score: float) -> float:
        return round(float(score), 6)


def _minmax(x: np.ndarray) -> np.ndarray:
    lo, hi = float(x.min()), float(x.max())
    return (x - lo) / (hi - lo) if hi > lo else np.ones_like(x)


MARGIN_DEPTH = 20  # the best match is compared with the next 19
RERANK_DEPTH = 30  # candidates re-ranked by the calibrated score (FusionMethod.calibrated)


class Retriever:
    def __init__(self, embedder: Embedder, *, mode: RetrievalMode = RetrievalMode.hybrid,
                 fusion: FusionMethod = FusionMethod.weighted, dense_weight: float = 0.2,
                 sentence_weight: float = 0.4, match_weight: float = 0.0, rrf_k: int = 60,
                 candidates: int = 100):
        if not 0.0 <= dense_weight <= 1.0:
            raise ValueError(f"dense_weight must be within [0, 1], got {dense_weight}")
        if not 0.0 <= sentence_weight <= 1.0 - dense_weight + 1e-9:
            raise ValueError(f"sentence_weight must be within [0, 1 - dense_weight], got {sentence_weight}")
        if not 0.0 <= match_weight <= 1.0 - dense_weight - sentence_weight + 1e-9:
            raise ValueError(f"match_weight must be within [0, 1 - dense_weight - sentence_weight], "
                             f"got {match_weight}")
        if candidates < 1:
            raise ValueError(f"candidates must be greater than 0, got {candidates}")
        if rrf_k < 1:
            raise ValueError(f"rrf_k must be greater than 0, got {rrf_k}")
        self.embedder = embedder
        self.mode = RetrievalMode(mode)
        self.fusion = FusionMethod(fusion)
        self.dense_weight = dense_weight
        self.sentence_weight = sentence_weight
        self.match_weight = match_weight
        self.rrf_k = rrf_k
        self.candidates = candidates


    def search(self, index: Index, query: str, top_k: int = 5, *, mode: RetrievalMode | None = None,
               filters: Filter | None = None, query_vector: np.ndarray | None = None,
               exclude: np.ndarray | None = None) -> list[Passage]:
        """The `top_k` best passages. Per-call `mode` overrides the retriever's; `query_vector` is the
        query's embedding when the caller has it (else it is embedded here, once); `exclude` names chunk
        rows left out (the corpus' own leave-one-out questions, rag/abstention.py)."""
        if top_k < 1:
            raise InvalidInputError(f"top_k must be greater than 0, got {top_k}")
        mode = mode or self.mode
        n = len(index.chunks)
        if n == 0:
            return []
        mask = index.allowed(filters)  # live rows passing the filters (None: all)
        if exclude is not None and len(exclude):
            mask = np.ones(n, dtype=bool) if mask is None else mask.copy()
            mask[exclude] = False
        if mask is not None and not mask.any():
            return []
        k = min(max(self.candidates, top_k), n)
        dense: dict[int, float] = {}
        # Every mode needs the query's vector: the calibrated score of what is returned uses its cosines.
        q = self.embedder.encode_query(query) if query_vector is None else query_vector
        if mode in (RetrievalMode.dense, RetrievalMode.hybrid):
            dense = self._dense(index, q, k, mask)
        lexical_all = index.bm25.scores(query) if mode in (RetrievalMode.lexical, RetrievalMode.hybrid) else None
        if lexical_all is not None and mask is not None:
            lexical_all = np.where(mask, lexical_all, -np.inf)
        # The best lexical rows, once: fusion's candidates and the margin's top 20 are both among them.
        lex_top = positive_top(lexical_all, max(k, MARGIN_DEPTH)) if lexical_all is not None else None

        if mode is RetrievalMode.dense:
            ranked = sorted(dense.items(), key=lambda kv: -kv[1])
        elif mode is RetrievalMode.lexical:
            ranked = [(int(r), float(lexical_all[r])) for r in lex_top]
        else:
            ranked = self._fuse(index, query, q, dense, lexical_all, lex_top)
        passages = []
        if mode is RetrievalMode.hybrid and self.fusion is FusionMethod.calibrated:
            pool = ranked[:max(top_k, RERANK_DEPTH)]
            pool_signals = self._signals(index, query, q, [r for r, _ in pool], dense, lexical_all, lex_top)
            order = sorted(range(len(pool)), key=lambda i: -PASSAGE_MODEL(**pool_signals[i]))[:top_k]
            top, signals = [pool[i] for i in order], [pool_signals[i] for i in order]
        else:
            top = ranked[:top_k]
            signals = self._signals(index, query, q, [r for r, _ in top], dense, lexical_all, lex_top)
        for rank, ((row, fused), sig) in enumerate(zip(top, signals), start=1):
            chunk_id, doc_row, start, end = index.chunks.locate(row)
            doc = index.documents[doc_row]
            passages.append(Passage(chunk_id=chunk_id, document_id=doc.id, source=doc.source, title=doc.title,
                                    text=doc.text[start:end], start=start, end=end, score=PASSAGE_MODEL(**sig),
                                    rank=rank, row=row, dense_score=sig["cosine"], fused=fused, signals=sig,
                                    page=page_of(doc, start)))
        return passages

    def _signals(self, index: Index, query: str, q: np.ndarray, rows: list[int], dense: dict[int, float],
                 lexical_all: np.ndarray | None, lex_top: np.ndarray | None) -> list[dict]:
        """The calibrated score's inputs for each returned chunk (scoring.py): a few vector products
        and the tokens of `top_k` chunks, whatever the mode."""
        if not rows:
            return []
        terms = query_terms(query, index.bm25)
        arr = np.asarray(rows, dtype=np.int64)
        missing = [r for r in rows if r not in dense]
        if missing:
            vecs = index.vectors.reconstruct_batch(np.asarray(missing, dtype=np.int64))
            dense.update({r: float(s) for r, s in zip(missing, vecs @ q)})
        if lexical_all is None:
            lexical_all = index.bm25.scores(query)
        if lex_top is None:  # dense mode: the lexical scores only for the margin
            lex_top = positive_top(lexical_all, MARGIN_DEPTH)
        sentence_cos = best_sentence_cosine(index, arr, q)
        tokens = tokenize_cached([index.chunks.text(r) for r in rows])
        ideal = terms.bm25_ideal or 1.0
        # How far the best match stands out from the next ones (per question, the same for every
        # passage): on a corpus where every document shares the question's topic, an unanswerable
        # question matches many passages equally well; an answerable one has a standout.
        lex_top = lexical_all[lex_top[:MARGIN_DEPTH]].astype(np.float64)  # sorted, positive; then zeros
        lex_top = np.concatenate([lex_top, np.zeros(min(MARGIN_DEPTH, len(lexical_all)) - len(lex_top))])
        dense_top = np.sort(np.fromiter(dense.values(), dtype=np.float64))[::-1][:MARGIN_DEPTH]
        margins = {"bm25_margin": float(lex_top[0] - lex_top[1:].mean()) / ideal if len(lex_top) > 1 else 0.0,
                   "cosine_margin": float(dense_top[0] - dense_top[1:].mean()) if len(dense_top) > 1 else 0.0}
        return [{"sentence_cosine": float(s), "cosine": dense[r], "bm25_share": float(lexical_all[r]) / ideal,
                 "coverage": terms.coverage(t), "unknown": terms.unknown, **margins}
                for r, s, t in zip(rows, sentence_cos.tolist(), tokens)]

    def _dense(self, index: Index, q: np.ndarray, k: int, mask: np.ndarray | None) -> dict[int, float]:
        scores, rows = index.dense_search(q, k, mask)
        return {int(r): float(s) for r, s in zip(rows, scores) if r >= 0}

    def _fuse(self, index: Index, query: str, q: np.ndarray, dense: dict[int, float], lexical_all: np.ndarray,
              lex_top: np.ndarray) -> list[tuple[int, float]]:
        lex_rows = lex_top.tolist()
        if self.fusion is FusionMethod.rrf:
            fused: dict[int, float] = {}
            for ranking in (sorted(dense, key=lambda r: -dense[r]), lex_rows):
                for rank, row in enumerate(ranking, start=1):
                    fused[row] = fused.get(row, 0.0) + 1.0 / (self.rrf_k + rank)
            return sorted(fused.items(), key=lambda kv: -kv[1])
        # Weighted fusion over the union of both candidate lists, each candidate scored exactly by
        # four signals: the chunk's cosine, its best sentence's cosine (sentence vectors are stored
        # at ingest), BM25 (from the full score vector) and its best sentence's lexical match with
        # the question; each min-max normalised over the pool.
        rows = np.array(sorted(set(dense) | set(lex_rows)), dtype=np.int64)
        missing = [r for r in rows.tolist() if r not in dense]
        if missing:
            vecs = index.vectors.reconstruct_batch(np.asarray(missing, dtype=np.int64))
            for r, s in zip(missing, vecs @ q):
                dense[r] = float(s)
        d = np.array([dense[r] for r in rows.tolist()], dtype=np.float64)
        lex = lexical_all[rows].astype(np.float64)
        bm25_weight = 1.0 - self.dense_weight - self.sentence_weight - self.match_weight
        score = self.dense_weight * _minmax(d) + bm25_weight * _minmax(lex)
        if self.sentence_weight > 0:
            score += self.sentence_weight * _minmax(best_sentence_cosine(index, rows, q))
        if self.match_weight > 0:
            score += self.match_weight * _minmax(best_sentence_match(index, rows, query_terms(query, index.bm25)))
        order = np.argsort(-score, kind="stable")
        return [(int(rows[i]), float(score[i])) for i in order]


def best_sentence_cosine(index: Index, rows: np.ndarray, q: np.ndarray) -> np.ndarray:
    """For each chunk row, the highest cosine between the query and one of its sentences."""
    ranges = index.chunk_sentences[rows]
    lengths = ranges[:, 1] - ranges[:, 0]
    if len(rows) == 0 or lengths.min() <= 0:
        return np.array([float((index.sentence_matrix(slice(s0, s1)) @ q).max(initial=-1.0))
                         for s0, s1 in ranges.tolist()])
    sentence_rows = np.concatenate([np.arange(s0, s1) for s0, s1 in ranges.tolist()])
    cos = index.sentence_matrix(sentence_rows) @ q
    starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))
    return np.maximum.reduceat(cos, starts).astype(np.float64)


def best_sentence_match(index: Index, rows: np.ndarray, terms: QueryTerms) -> np.ndarray:
    """For each chunk row, the best lexical match of one of its sentences with the question
    (scoring.QueryTerms.sentence_match: IDF-weighted coverage plus phrase coverage). A question usually
    asks about one sentence: BM25 over a whole chunk (a long paragraph in a paper) rewards words spread
    over unrelated sentences, this does not."""
    out = np.zeros(len(rows), dtype=np.float64)
    if not terms.total or len(rows) == 0:
        return out
    ranges = index.chunk_sentences[rows].tolist()
    sentence_rows = np.concatenate([np.arange(s0, s1) for s0, s1 in ranges])
    stored = index.sentence_terms_of(sentence_rows)
    if stored is not None:  # terms stored at ingest: array work
        match = terms.sentence_matches(stored[0], stored[1], len(sentence_rows)).tolist()
    else:  # an index written before they were stored
        match = [terms.sentence_match(t) for t in _SENTENCE_TOKENS.get(index, sentence_rows)]
    pos = 0
    for i, (s0, s1) in enumerate(ranges):
        out[i] = max(match[pos:pos + s1 - s0], default=0.0)
        pos += s1 - s0
    return out


class _SentenceTokenCache:
    """Tokens of the current index's sentences by row: a question's ~150 candidate chunks hold ~1,500
    sentences, and reading their documents' text (on demand from a snapshot) for each question cost
    more than the rest of retrieval. Kept for one index at a time, bounded; dict operations are atomic
    under the GIL, so concurrent queries at worst tokenize a sentence twice."""

    LIMIT = 200_000  # sentences (~35 MB of token tuples); emptied when full

    def __init__(self) -> None:
        self._index: weakref.ref | None = None
        self._tokens: dict[int, tuple[str, ...]] = {}

    def get(self, index: Index, sentence_rows: np.ndarray) -> list[tuple[str, ...]]:
        if self._index is None or self._index() is not index:
            self._index, self._tokens = weakref.ref(index), {}
        cache = self._tokens
        rows = sentence_rows.tolist()
        missing = [r for r in dict.fromkeys(rows) if r not in cache]
        if missing:
            if len(cache) + len(missing) > self.LIMIT:
                cache.clear()
            spans = index.sentences[np.asarray(missing, dtype=np.int64)].tolist()
            texts: dict[int, str] = {}  # each document's text read once
            found = tokenize([(texts.get(d) or texts.setdefault(d, index.documents[d].text))[a:b]
                              for d, a, b in spans])
            cache.update(zip(missing, map(tuple, found)))
        return [cache[r] for r in rows]


_SENTENCE_TOKENS = _SentenceTokenCache()


def positive_top(scores: np.ndarray, k: int) -> np.ndarray:
    """The rows of the `k` highest positive scores, best first, and any that tie with the k-th (up to
    4k in all): a set that does not depend on row order, so shards that each send theirs make up the
    same candidates as one index (test_cluster_fusion). Only rows that score at all are partitioned:
    at a million chunks a question's terms touch a fraction of them."""
    rows = np.flatnonzero(scores > 0)
    if len(rows) > k:
        values = scores[rows]
        kth = np.partition(values, len(values) - k)[len(values) - k]
        rows = rows[values >= kth]
        if len(rows) > 4 * k:
            rows = rows[np.argpartition(-scores[rows], 4 * k - 1)[:4 * k]]
    return rows[np.argsort(-scores[rows], kind="stable")]
