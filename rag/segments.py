"""The served index: immutable segments seen as one.

A segment (`rag.index.Index`) is built once and never changed; a write adds a small segment and
marks the documents it replaces or deletes as deleted (tombstones) in the older ones; a merge
(`rag.merge`) rewrites several segments into one without their deleted documents. `SegmentedIndex`
presents the segments to readers as one index with one row space (segment after segment, for
documents, chunks and sentences), scores BM25 with statistics over every live chunk, and merges
dense results exactly, so a query sees what one index freshly built over the live documents shows.
"""
from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Callable, Iterator, Sequence

import numpy as np

from .chunking import Chunk
from .index import Index, IndexConfig
from .lexical import BM25View

if TYPE_CHECKING:
    from .filters import Filter


@dataclass(frozen=True, eq=False)
class Segment:
    """One immutable segment and the rows of its documents deleted since it was written. `name` is
    its directory under the index root once flushed; an unflushed segment lives in memory and in
    the journal."""

    index: Index
    deleted: frozenset[int] = frozenset()  # document rows
    name: str | None = None

    @cached_property
    def live(self) -> np.ndarray | None:
        """A mask over the segment's chunks (None when no document is deleted)."""
        if not self.deleted:
            return None
        dead_docs = np.zeros(len(self.index.documents), dtype=bool)
        dead_docs[list(self.deleted)] = True
        return ~dead_docs[self.index.chunk_doc_row]

    @property
    def chunks(self) -> int:
        return len(self.index.chunk_doc_row)

    @cached_property
    def live_chunks(self) -> int:
        return self.chunks if self.live is None else int(np.count_nonzero(self.live))

    @property
    def live_documents(self) -> int:
        return len(self.index.documents) - len(self.deleted)

    def without(self, rows: Sequence[int]) -> "Segment":
        return Segment(self.index, self.deleted | frozenset(rows), self.name)

    def documents(self) -> Iterator:
        deleted = self.deleted
        return (d for r, d in enumerate(self.index.documents) if r not in deleted)


def _offsets(sizes: Sequence[int]) -> np.ndarray:
    return np.cumsum([0, *sizes]).astype(np.int64)


class _Rows:
    """Rows of per-segment arrays in the global row space, with each segment's offsets added to
    the columns that hold row numbers of another table. (The first segment's offsets are 0, so a
    lone segment's rows are read as they are: the common case costs one numpy read.)"""

    def __init__(self, parts: Sequence, offsets: np.ndarray, shift: Callable[[int, np.ndarray], None]):
        self._parts, self._offsets, self._shift = parts, offsets, shift
        self._bounds = offsets.tolist()

    def __len__(self) -> int:
        return int(self._offsets[-1])

    def __getitem__(self, key) -> np.ndarray:
        if isinstance(key, (int, np.integer)):
            key = int(key)
            if not 0 <= key < len(self):
                return self[np.asarray([key])][0]  # negative or out of range: numpy's rules and errors
            s = bisect_right(self._bounds, key) - 1
            values = np.array(self._parts[s][key - self._bounds[s]])
            if s:
                self._shift(s, values)
            return values
        if len(self._parts) == 1 and not isinstance(key, slice):
            rows = np.asarray(key, dtype=np.int64)
            if rows.ndim == 1:
                return np.array(self._parts[0][rows])
        rows = np.arange(*key.indices(len(self))) if isinstance(key, slice) else np.asarray(key, dtype=np.int64)
        flat = rows.reshape(-1)
        seg = np.searchsorted(self._offsets, flat, side="right") - 1
        out = None
        for s in np.unique(seg).tolist():
            at = np.flatnonzero(seg == s)
            local = flat[at] - self._offsets[s]
            values = np.array(self._parts[s][local])
            self._shift(s, values)
            if out is None:
                out = np.empty((len(flat),) + values.shape[1:], dtype=values.dtype)
            out[at] = values
        if out is None:
            out = np.empty((0,) + np.asarray(self._parts[0][:0]).shape[1:], dtype=np.int64) if self._parts \
                else np.empty(0, dtype=np.int64)
        return out.reshape(rows.shape + out.shape[1:])


class _Documents(Sequence):
    """Every segment's documents in one row space (deleted ones too: rows stay put)."""

    def __init__(self, segments: Sequence[Segment], offsets: np.ndarray):
        self._segments, self._offsets = segments, offsets
        self._bounds = offsets.tolist()

    def __len__(self) -> int:
        return int(self._offsets[-1])

    def __getitem__(self, row):  # type: ignore[override]
        row = int(row)
        if not 0 <= row < len(self):
            raise IndexError(f"document row {row} out of range for {len(self)} documents")
        s = bisect_right(self._bounds, row) - 1
        return self._segments[s].index.documents[row - self._bounds[s]]


class _Chunks:
    def __init__(self, view: "SegmentedIndex"):
        self._view = view

    def __len__(self) -> int:
        return self._view.rows

    def _find(self, row: int) -> tuple[int, int]:
        bounds = self._view.chunk_bounds
        s = bisect_right(bounds, row) - 1
        return s, row - bounds[s]

    def locate(self, row: int) -> tuple[str, int, int, int]:
        s, local = self._find(int(row))
        chunk_id, doc_row, start, end = self._view.segments[s].index.chunks.locate(local)
        return chunk_id, doc_row + int(self._view.doc_offsets[s]), start, end

    def text(self, row: int) -> str:
        s, local = self._find(int(row))
        return self._view.segments[s].index.chunks.text(local)

    def __getitem__(self, row):
        if isinstance(row, slice):
            return [self[i] for i in range(*row.indices(len(self)))]
        n, row = len(self), int(row)
        if not -n <= row < n:
            raise IndexError(f"chunk row {row} out of range for {n} chunks")
        s, local = self._find(row % n)
        chunk = self._view.segments[s].index.chunks[local]
        return chunk

    def __iter__(self) -> Iterator[Chunk]:
        for seg in self._view.segments:
            yield from seg.index.chunks


class _Vectors:
    def __init__(self, view: "SegmentedIndex"):
        self._view = view
        self.ntotal = view.rows
        self.d = view.config.dimension

    def reconstruct_batch(self, rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.int64)
        out = np.empty((len(rows), self.d), dtype=np.float32)
        seg = np.searchsorted(self._view.chunk_offsets, rows, side="right") - 1
        for s in np.unique(seg).tolist():
            at = np.flatnonzero(seg == s)
            out[at] = self._view.segments[s].index.vectors.reconstruct_batch(rows[at] - self._view.chunk_offsets[s])
        return out


@dataclass(frozen=True, eq=False)
class SegmentedIndex:
    """Segments (oldest first) read as one index; immutable: a write makes a new one."""

    config: IndexConfig
    segments: tuple[Segment, ...] = ()
    journal_seq: int = 0  # the last journal change it contains
    generation: int = 0  # of the manifest it was loaded from or last written as
    damaged: tuple[tuple[str, str, tuple[int, ...]], ...] = ()  # (name, reason, deleted rows) of segments left out

    @cached_property
    def chunk_offsets(self) -> np.ndarray:
        return _offsets([s.chunks for s in self.segments])

    @cached_property
    def chunk_bounds(self) -> list[int]:
        return self.chunk_offsets.tolist()

    @cached_property
    def doc_offsets(self) -> np.ndarray:
        return _offsets([len(s.index.documents) for s in self.segments])

    @cached_property
    def sentence_offsets(self) -> np.ndarray:
        return _offsets([len(s.index.sentences) for s in self.segments])

    @property
    def rows(self) -> int:
        return int(self.chunk_offsets[-1])

    # -- what readers use (the same names as a single `Index`) ------------------------------
    @cached_property
    def documents(self) -> _Documents:
        return _Documents(self.segments, self.doc_offsets)

    @cached_property
    def chunks(self) -> _Chunks:
        return _Chunks(self)

    @cached_property
    def chunk_sentences(self) -> _Rows:
        def shift(s: int, v: np.ndarray) -> None:
            v += self.sentence_offsets[s]
        return _Rows([s.index.chunk_sentences for s in self.segments], self.chunk_offsets, shift)

    @cached_property
    def sentences(self) -> _Rows:
        def shift(s: int, v: np.ndarray) -> None:
            v[..., 0] += self.doc_offsets[s]
        return _Rows([s.index.sentences for s in self.segments], self.sentence_offsets, shift)

    def sentence_matrix(self, rows) -> np.ndarray:
        if len(self.segments) == 1:
            return self.segments[0].index.sentence_matrix(rows)
        rows = np.arange(*rows.indices(int(self.sentence_offsets[-1]))) if isinstance(rows, slice) \
            else np.asarray(rows, dtype=np.int64)
        out = np.empty((len(rows), self.config.dimension), dtype=np.float32)
        seg = np.searchsorted(self.sentence_offsets, rows, side="right") - 1
        for s in np.unique(seg).tolist():
            at = np.flatnonzero(seg == s)
            out[at] = self.segments[s].index.sentence_matrix(rows[at] - self.sentence_offsets[s])
        return out

    def sentence_terms_of(self, rows) -> tuple[np.ndarray, np.ndarray] | None:
        """(hashes, owner) of sentence `rows` (SentenceTerms.read) across segments; None when a
        segment they fall in has no stored terms (written by an older version)."""
        rows = np.asarray(rows, dtype=np.int64)
        if len(self.segments) == 1:
            return self.segments[0].index.sentence_terms_of(rows)
        seg = np.searchsorted(self.sentence_offsets, rows, side="right") - 1
        hashes, owners = [], []
        for s in np.unique(seg).tolist():
            at = np.flatnonzero(seg == s)
            found = self.segments[s].index.sentence_terms_of(rows[at] - self.sentence_offsets[s])
            if found is None:
                return None
            hashes.append(found[0])
            owners.append(at[found[1]])
        if not hashes:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        owner = np.concatenate(owners)
        order = np.argsort(owner, kind="stable")  # back in the order of `rows`, each sentence's terms in order
        return np.concatenate(hashes)[order], owner[order]

    @cached_property
    def vectors(self) -> _Vectors:
        return _Vectors(self)

    @cached_property
    def bm25(self) -> BM25View:
        return BM25View([(s.index.bm25, s.live) for s in self.segments])

    def document(self, doc_id: str):
        found = self.find(doc_id)
        return None if found is None else self.segments[found[0]].index.documents[found[1]]

    def find(self, doc_id: str) -> tuple[int, int] | None:
        """(segment position, document row in it) of the live document with this id."""
        for s in range(len(self.segments) - 1, -1, -1):
            seg = self.segments[s]
            row = seg.index.doc_row.get(doc_id)
            if row is not None and row not in seg.deleted:
                return s, row
        return None

    def live_documents(self) -> list:
        return self._live_documents

    @cached_property
    def _live_documents(self) -> list:
        return [d for s in self.segments for d in s.documents()]

    @property
    def document_count(self) -> int:
        return sum(s.live_documents for s in self.segments)

    @property
    def chunk_count(self) -> int:
        return sum(s.live_chunks for s in self.segments)

    @cached_property
    def live(self) -> np.ndarray | None:
        if all(s.live is None for s in self.segments):
            return None
        return np.concatenate([np.ones(s.chunks, bool) if s.live is None else s.live for s in self.segments])

    def allowed(self, filters: "Filter | None") -> np.ndarray | None:
        """The chunk rows a search may return: live ones passing `filters` (None: every row)."""
        if filters is None:
            return self.live
        masks = [filters.mask(s.index) for s in self.segments]  # cached per segment, so a write recomputes one
        mask = np.concatenate(masks) if masks else np.zeros(0, dtype=bool)
        return mask if self.live is None else mask & self.live

    def dense_search(self, q: np.ndarray, k: int, mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Exact merge of each segment's top k (scores, rows in the global row space)."""
        from .vectors import search

        all_scores, all_rows = [], []
        for s, seg in enumerate(self.segments):
            a, b = int(self.chunk_offsets[s]), int(self.chunk_offsets[s + 1])
            part = None if mask is None else mask[a:b]
            if b == a or (part is not None and not part.any()):
                continue
            scores, rows = search(seg.index.vectors, q, min(k, b - a), part)
            keep = rows >= 0
            all_scores.append(scores[keep])
            all_rows.append(rows[keep] + a)
        if not all_scores:
            return np.zeros(0, np.float32), np.zeros(0, np.int64)
        scores, rows = np.concatenate(all_scores), np.concatenate(all_rows)
        top = np.lexsort((rows, -scores))[:k]
        return scores[top], rows[top]

    # -- writes make new views -----------------------------------------------------------------
    def replaced(self, segments: Sequence[Segment], journal_seq: int | None = None) -> "SegmentedIndex":
        return SegmentedIndex(self.config, tuple(segments), self.journal_seq if journal_seq is None else journal_seq,
                              self.generation, self.damaged)

    @classmethod
    def of(cls, index: Index) -> "SegmentedIndex":
        """One segment (in memory) as a segmented index."""
        return cls(index.config, (Segment(index),) if len(index.documents) else (), index.journal_seq)
