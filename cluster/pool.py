"""The candidate pool: what the shards returned for one question, shaped as an index.

Each shard returns its local dense and lexical top-k (BM25 under global statistics) with what ranking
and answering read of a chunk: its vector, text, sentences and their vectors. The global top-k of
either list lies within the union of the local ones, so `rag.retrieval.Retriever` ranking this pool
ranks exactly as it would the whole corpus, and the generators quote from it. Texts are partial:
only the returned chunks' spans are present, and reading outside them is an error, never a guess.
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from .lexical import GlobalLexicon


@dataclass
class Candidates:
    """One shard's candidates for one question (plain arrays: cheap to send between processes)."""

    shard: int
    chunk_ids: list[str]
    chunk_docs: list[str]  # document id of each chunk
    bounds: np.ndarray  # int64 (m, 2): start, end in the document's text
    texts: list[str]
    vectors: np.ndarray  # float32 (m, dim)
    lexical: np.ndarray  # float32 (m,): BM25 under the global statistics
    sentence_ranges: np.ndarray  # int64 (m, 2): [first, last) row in `sentences`
    sentences: np.ndarray  # int64 (s, 2): start, end in the document's text
    sentence_vectors: np.ndarray  # float16 (s, dim)
    documents: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> source, title, metadata, chars


class PartialText:
    """A document's text where only some spans are known: slicing within one of them works."""

    def __init__(self, length: int):
        self._length = length
        self._starts: list[int] = []
        self._spans: list[tuple[int, str]] = []

    def add(self, start: int, text: str) -> None:
        i = bisect.bisect_left(self._starts, start)
        self._starts.insert(i, start)
        self._spans.insert(i, (start, text))

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, key: slice) -> str:
        if not isinstance(key, slice) or key.step not in (None, 1):
            raise TypeError("a partial text can only be sliced")
        a, b, _ = key.indices(self._length)
        i = bisect.bisect_right(self._starts, a)
        while i > 0:
            i -= 1
            start, text = self._spans[i]
            if b <= start + len(text):
                return text[a - start:b - start]
        raise IndexError(f"text [{a}:{b}] lies outside the retrieved spans")


@dataclass
class PartialDocument:
    id: str
    source: str
    title: str
    text: PartialText
    metadata: dict[str, Any]


class PoolChunks:
    def __init__(self, ids: list[str], doc_rows: list[int], bounds: np.ndarray, texts: list[str]):
        self._ids, self._doc_rows, self._bounds, self._texts = ids, doc_rows, bounds, texts

    def __len__(self) -> int:
        return len(self._ids)

    def locate(self, row: int) -> tuple[str, int, int, int]:
        start, end = self._bounds[row].tolist()
        return self._ids[row], self._doc_rows[row], start, end

    def text(self, row: int) -> str:
        return self._texts[row]


class PoolIndex:
    """The union of the shards' candidates as an index (rows are pool rows)."""

    def __init__(self, parts: Sequence[Candidates], bm25_stats, lookup=None, known_terms=()):
        import faiss

        parts = [p for p in parts if p.chunk_ids]
        self.documents: list[PartialDocument] = []
        self.doc_row: dict[str, int] = {}
        doc_rows: list[int] = []
        for p in parts:
            for doc_id, (a, b), text in zip(p.chunk_docs, p.bounds.tolist(), p.texts):
                if doc_id not in self.doc_row:
                    d = p.documents[doc_id]
                    self.doc_row[doc_id] = len(self.documents)
                    self.documents.append(PartialDocument(doc_id, d["source"], d["title"], PartialText(d["chars"]),
                                                          d["metadata"]))
                row = self.doc_row[doc_id]
                self.documents[row].text.add(a, text)
                doc_rows.append(row)
        dim = parts[0].vectors.shape[1] if parts else 1
        cat = lambda arrays, shape, dtype: np.concatenate(arrays) if arrays else np.zeros(shape, dtype=dtype)  # noqa: E731
        bounds = cat([p.bounds for p in parts], (0, 2), np.int64)
        self.chunks = PoolChunks([c for p in parts for c in p.chunk_ids], doc_rows, bounds,
                                 [t for p in parts for t in p.texts])
        # One row per distinct sentence (overlapping chunks share one, as in the index), a document's
        # sentences in text order, so each chunk's sentences stay one contiguous range of rows.
        offsets = np.cumsum([0] + [len(p.sentences) for p in parts])
        ranges = cat([p.sentence_ranges + o for p, o in zip(parts, offsets)], (0, 2), np.int64)
        spans = cat([p.sentences for p in parts], (0, 2), np.int64)
        owner = np.zeros(len(spans), dtype=np.int64)  # each sentence's document row
        lengths = ranges[:, 1] - ranges[:, 0]
        owner[np.concatenate([np.arange(a, b) for a, b in ranges.tolist()]) if len(ranges) else []] = \
            np.repeat(np.asarray(doc_rows, dtype=np.int64), lengths)
        keys = np.column_stack([owner, spans]) if len(spans) else np.zeros((0, 3), np.int64)
        self.sentences, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
        inverse = inverse.reshape(-1)
        self.sentence_vectors = (cat([p.sentence_vectors for p in parts], (0, dim), np.float16)[first]
                                 .astype(np.float16))
        nonempty = lengths > 0
        self.chunk_sentences = np.zeros((len(ranges), 2), dtype=np.int64)
        self.chunk_sentences[nonempty, 0] = inverse[ranges[nonempty, 0]]
        self.chunk_sentences[nonempty, 1] = inverse[ranges[nonempty, 1] - 1] + 1
        self.vectors = faiss.IndexFlatIP(dim)
        vectors = cat([p.vectors for p in parts], (0, dim), np.float32)
        if len(vectors):
            self.vectors.add(np.ascontiguousarray(vectors, dtype=np.float32))
        self.bm25 = GlobalLexicon(bm25_stats, cat([p.lexical for p in parts], (0,), np.float32), lookup, known_terms)

    def document(self, doc_id: str):
        row = self.doc_row.get(doc_id)
        return None if row is None else self.documents[row]

    def allowed(self, filters) -> np.ndarray | None:
        """Every pool row: the shards applied the filters (and left out deleted chunks)."""
        return None

    def sentence_terms_of(self, rows: np.ndarray) -> None:
        """Shards send sentence texts, not their stored terms: the pool (a few hundred chunks) is
        tokenized where it is ranked."""
        return None

    def dense_search(self, q: np.ndarray, k: int, mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        from rag.vectors import search

        return search(self.vectors, q, k, mask)

    def sentence_matrix(self, rows) -> np.ndarray:
        return np.asarray(self.sentence_vectors[rows], dtype=np.float32)
