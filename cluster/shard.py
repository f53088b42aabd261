"""One shard: a pipeline over its own data directory (its own journal and snapshots, the single
writer of them), answering the coordinator's questions about its part of the corpus.

Plain Python: the Ray Serve deployment (`cluster.serving`) wraps it, and tests run it in-process.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from rag.config import RetrievalMode, Settings
from rag.documents import Document
from rag.embedding import Embedder
from rag.errors import IndexNotFoundError
from rag.filters import Filter
from rag.lexical import tokenize
from rag.pipeline import Pipeline
from rag.retrieval import MARGIN_DEPTH, positive_top

from .lexical import LexStats, ShardLexicon
from .pool import Candidates


def shard_of(doc_id: str, shards: int) -> int:
    """The shard owning a document: a stable hash of its id (the same in every process and run)."""
    return int.from_bytes(hashlib.blake2b(doc_id.encode("utf-8"), digest_size=8).digest(), "big") % shards


def shard_dir(data_dir: Path, shard: int) -> Path:
    """Where shard `shard` keeps its index, on the node that serves it."""
    return Path(data_dir) / "shards" / f"shard-{shard:03d}"


def shard_settings(settings: Settings, shard: int) -> Settings:
    return Settings(**{**settings.model_dump(), "data_dir": shard_dir(settings.data_dir, shard)})


def _top(scores: np.ndarray, k: int) -> np.ndarray:
    k = min(k, len(scores))
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    return np.argpartition(-scores, k - 1)[:k]


class Shard:
    def __init__(self, settings: Settings, shard: int, shards: int, *, embedder: Embedder | None = None):
        self.shard, self._shards = shard, shards
        self.settings = shard_settings(settings, shard)
        self.pipeline = Pipeline(self.settings, embedder=embedder)
        try:
            self.pipeline.load(build_from_seeds=False)
        except IndexNotFoundError:
            self.pipeline.open_empty()  # a shard that no ingest has written yet serves nothing

    def close(self) -> None:
        self.pipeline.close()

    def _index(self):
        self.pipeline.refresh()  # another replica of this shard may have written
        return self.pipeline.index

    def info(self) -> dict:
        index = self._index()
        return {"shard": self.shard, "documents": index.document_count, "chunks": index.chunk_count,
                "pid": os.getpid(), "data_dir": str(self.settings.data_dir)}

    # -- queries ---------------------------------------------------------------------------
    def stats(self, terms: Sequence[str]) -> LexStats:
        return ShardLexicon(self._index()).stats(terms)

    def candidates(self, query: str, vector: np.ndarray, top_k: int, mode: RetrievalMode, stats: LexStats,
                   filters: dict | None = None) -> Candidates:
        """The local dense and lexical top-k (k as the Retriever takes it), and the lexical top 20
        that the score margins read, with everything ranking and answering need of each."""
        index = self._index()
        n = len(index.chunks)
        parsed = Filter.parse(filters) if filters else None
        mask = index.allowed(parsed) if n else None  # live rows passing the filters (None: all)
        if n == 0 or (mask is not None and not mask.any()):
            return self._pack(index, np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32))
        k = min(max(self.pipeline.settings.candidates, top_k), n)
        lexical = ShardLexicon(index).scores(tokenize([query])[0], stats)
        if mask is not None:
            lexical = np.where(mask, lexical, -np.inf)
        rows = {int(r) for r in _top(lexical, MARGIN_DEPTH)}
        if mode is not RetrievalMode.dense:
            rows |= set(positive_top(lexical, k).tolist())  # with its ties, as the coordinator ranks
        if mode is not RetrievalMode.lexical:
            _, dense_rows = index.dense_search(vector, k, mask)
            rows |= {int(r) for r in dense_rows if r >= 0}
        rows = np.array(sorted(r for r in rows if np.isfinite(lexical[r])), dtype=np.int64)
        return self._pack(index, rows, lexical[rows])

    def _pack(self, index, rows: np.ndarray, lexical: np.ndarray) -> Candidates:
        ids, docs, texts, bounds = [], [], [], []
        documents: dict = {}
        for row in rows.tolist():
            chunk_id, doc_row, start, end = index.chunks.locate(row)
            bounds.append((start, end))
            doc = index.documents[doc_row]
            if doc.id not in documents:
                documents[doc.id] = {"source": doc.source, "title": doc.title, "metadata": dict(doc.metadata),
                                     "chars": len(doc.text)}
            ids.append(chunk_id), docs.append(doc.id), texts.append(doc.text[start:end])
        dim = index.config.dimension
        ranges = np.asarray(index.chunk_sentences[rows], dtype=np.int64).reshape(-1, 2)
        lengths = ranges[:, 1] - ranges[:, 0]
        sentence_rows = (np.concatenate([np.arange(a, b) for a, b in ranges.tolist()]) if len(rows)
                         else np.zeros(0, dtype=np.int64))
        ends = np.cumsum(lengths)
        return Candidates(shard=self.shard, chunk_ids=ids, chunk_docs=docs,
                          bounds=np.asarray(bounds, dtype=np.int64).reshape(-1, 2), texts=texts,
                          vectors=(index.vectors.reconstruct_batch(rows) if len(rows)
                                   else np.zeros((0, dim), np.float32)),
                          lexical=np.asarray(lexical, np.float32),
                          sentence_ranges=np.column_stack([ends - lengths, ends]).astype(np.int64),
                          sentences=np.asarray(index.sentences[sentence_rows][:, 1:], dtype=np.int64).reshape(-1, 2),
                          sentence_vectors=index.sentence_matrix(sentence_rows).astype(np.float16).reshape(-1, dim),
                          documents=documents)

    # -- documents ---------------------------------------------------------------------------
    def document(self, doc_id: str) -> Document | None:
        doc = self._index().document(doc_id)
        return None if doc is None else Document(doc.id, doc.source, doc.title, doc.text, dict(doc.metadata))

    def document_ids(self) -> list[str]:
        return [d.id for d in self._index().live_documents()]

    def documents(self, ids: Sequence[str]) -> list[Document]:
        return [d for d in map(self.document, ids) if d is not None]

    def put(self, documents: Sequence[Document]) -> list[str]:
        for doc in documents:
            if shard_of(doc.id, self._shards) != self.shard:
                raise ValueError(f"document {doc.id!r} belongs to shard {shard_of(doc.id, self._shards)}")
        return self.pipeline.put_documents(documents)

    def delete(self, doc_id: str) -> None:
        self.pipeline.delete_document(doc_id)

    def compact(self) -> None:
        self.pipeline.compact()


class LocalClient:
    """A shard in this process, behind the same interface as a remote one (tests, one machine)."""

    def __init__(self, shard: Shard):
        self.shard = shard

    def start(self, method: str, *args):
        try:
            result = getattr(self.shard, method)(*args)
        except Exception as exc:  # noqa: BLE001 - raised when waited for, as a remote call's would be
            error = exc

            def fail(_: float):
                raise error
            return fail
        return lambda _timeout: result
