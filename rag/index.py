"""The index in memory: an immutable snapshot of documents, chunks, sentences, vectors and BM25.

Readers hold a reference to one `Index`; writers build a new one (`rag.build`) and swap it in.
How it is stored on disk is `rag.snapshot`'s job.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import cached_property
from typing import Sequence

import numpy as np

from .chunking import Chunk, Span
from .errors import IndexCorruptError
from .lexical import BM25Index
from .npyfile import NpyFile
from .sentence_terms import SentenceTerms


@dataclass(frozen=True)
class IndexConfig:
    """Everything that changes what is stored: an index built otherwise is not mixed with this one."""

    embed_model: str
    dimension: int
    embed_precision: str  # fp32 (torch and ONNX give the same vectors) or int8
    chunk_size: int
    chunk_overlap: int
    index_titles: bool
    sentence_splitter: int = 1  # rag.chunking.SENTENCE_SPLITTER it was built with (absent from older manifests: 1)

    def differences(self, other: "IndexConfig") -> list[str]:
        mine, theirs = asdict(self), asdict(other)
        return [f"{k}: index has {theirs[k]!r}, settings say {mine[k]!r}" for k in mine if mine[k] != theirs[k]]


class ChunkTable(Sequence[Chunk]):
    """The chunks of an index as columns. A million `Chunk` objects each holding a copy of its text
    would not fit the memory target; a chunk is built from the columns and its document's text when
    asked for (only the few that are returned)."""

    def __init__(self, documents: Sequence, doc_row: np.ndarray, bounds: np.ndarray,
                 sentence_ranges: np.ndarray, sentences: np.ndarray):
        self._documents = documents
        self._doc_row = doc_row
        self._bounds = bounds
        self._ranges = sentence_ranges
        self._sentences = sentences
        # A document's chunks are consecutive rows: a chunk's number within it (its id's suffix)
        # is its row minus the document's first row.
        self._first = np.searchsorted(doc_row, np.arange(len(documents)))

    def __len__(self) -> int:
        return len(self._doc_row)

    def locate(self, row: int) -> tuple[str, int, int, int]:
        """A chunk's id, document row, start and end: what a passage needs, without its sentences."""
        doc_row = int(self._doc_row[row])
        start, end = self._bounds[row].tolist()
        return f"{self._documents[doc_row].id}:{row - int(self._first[doc_row])}", doc_row, start, end

    def text(self, row: int) -> str:
        """A chunk's text (sliced from its document's stored text)."""
        _, doc_row, start, end = self.locate(row)
        return self._documents[doc_row].text[start:end]

    def __getitem__(self, row):  # type: ignore[override]
        if isinstance(row, slice):
            return [self[i] for i in range(*row.indices(len(self)))]
        n = len(self)
        row = int(row)
        if not -n <= row < n:
            raise IndexError(f"chunk row {row} out of range for {n} chunks")
        row %= n
        doc_row = int(self._doc_row[row])
        doc = self._documents[doc_row]
        start, end = (int(x) for x in self._bounds[row])
        s0, s1 = (int(x) for x in self._ranges[row])
        spans = tuple(Span(int(a), int(b)) for _, a, b in np.asarray(self._sentences[s0:s1]).tolist())
        return Chunk(id=f"{doc.id}:{row - int(self._first[doc_row])}", document_id=doc.id, start=start, end=end,
                     text=doc.text[start:end], sentences=spans)


@dataclass(frozen=True)
class Index:
    """An immutable snapshot. Readers hold a reference; writers build a new one and swap it in."""

    config: IndexConfig
    documents: Sequence  # Document or snapshot.StoredDocument (text read on demand)
    chunk_doc_row: np.ndarray  # int64 (n_chunks,): the document row of each chunk, non-decreasing
    chunk_bounds: np.ndarray  # int64 (n_chunks, 2): start, end in the document's stored text
    chunk_sentences: np.ndarray  # int64 (n_chunks, 2): [first, last) row in the sentence table
    sentences: np.ndarray  # int64 (n_sentences, 3): document row, start, end
    sentence_vectors: np.ndarray | NpyFile  # float16 (n_sentences, dim); read on demand when loaded
    vectors: object  # faiss.Index over chunk rows (flat or IVF, see vectors.py)
    bm25: BM25Index
    journal_seq: int = 0  # the last journal change this snapshot contains
    vectors_source: str | None = None  # the file `vectors` was loaded from (memory-mapped), if any
    sentence_terms: SentenceTerms | None = None  # each sentence's term hashes (None: an older segment)

    def __post_init__(self) -> None:
        self.check_consistency()

    @cached_property
    def doc_row(self) -> dict[str, int]:
        return {d.id: i for i, d in enumerate(self.documents)}

    @cached_property
    def chunks(self) -> ChunkTable:
        return ChunkTable(self.documents, self.chunk_doc_row, self.chunk_bounds, self.chunk_sentences, self.sentences)

    # -- queries -------------------------------------------------------------------------
    def document(self, doc_id: str):
        row = self.doc_row.get(doc_id)
        return None if row is None else self.documents[row]

    def live_documents(self) -> list:
        return list(self.documents)

    @property
    def document_count(self) -> int:
        return len(self.documents)

    @property
    def chunk_count(self) -> int:
        return len(self.chunk_doc_row)

    def allowed(self, filters) -> np.ndarray | None:
        """The chunk rows a search may return (None: every row)."""
        return filters.mask(self) if filters is not None else None

    def dense_search(self, q: np.ndarray, k: int, mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        from .vectors import search

        return search(self.vectors, q, k, mask)

    def sentence_terms_of(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """(hashes, owner) of sentence `rows` (SentenceTerms.read); None when not stored."""
        return None if self.sentence_terms is None else self.sentence_terms.read(rows)

    def chunk_vectors(self) -> np.ndarray:
        n = len(self.chunk_doc_row)
        if n == 0:
            return np.zeros((0, self.config.dimension), dtype=np.float32)
        return self.vectors.reconstruct_n(0, n)

    def sentence_matrix(self, rows) -> np.ndarray:
        """float32 vectors of the given sentence rows (stored as float16: half the disk and memory,
        cosines within 1e-3)."""
        return np.asarray(self.sentence_vectors[rows], dtype=np.float32)

    def check_consistency(self) -> None:
        n_chunks = len(self.chunk_doc_row)
        problems = []
        if self.vectors.ntotal != n_chunks:
            problems.append(f"FAISS holds {self.vectors.ntotal} vectors for {n_chunks} chunks")
        if self.vectors.d != self.config.dimension:
            problems.append(f"FAISS dimension {self.vectors.d} != manifest dimension {self.config.dimension}")
        if self.bm25.size != n_chunks:
            problems.append(f"BM25 corpus has {self.bm25.size} entries for {n_chunks} chunks")
        if self.chunk_bounds.shape != (n_chunks, 2) or self.chunk_sentences.shape != (n_chunks, 2):
            problems.append(f"chunk columns disagree on the number of chunks ({n_chunks})")
        if n_chunks and (np.any(np.diff(self.chunk_doc_row) < 0) or self.chunk_doc_row[0] < 0
                         or self.chunk_doc_row[-1] >= len(self.documents)):
            problems.append("chunk document rows are out of order or out of range")
        if self.sentence_vectors.shape != (len(self.sentences), self.config.dimension):
            problems.append(f"{self.sentence_vectors.shape[0]} sentence vectors for {len(self.sentences)} sentences")
        if self.sentence_terms is not None and len(self.sentence_terms) != len(self.sentences):
            problems.append(f"terms of {len(self.sentence_terms)} sentences for {len(self.sentences)} sentences")
        if problems:
            raise IndexCorruptError("index is inconsistent: " + "; ".join(problems))
