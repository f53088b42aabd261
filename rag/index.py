"""The index: documents, chunks, sentences, FAISS vectors and BM25, persisted as atomic snapshots.

On disk (under `RAG_DATA_DIR/index/`):

    CURRENT                 name of the live snapshot, replaced atomically (os.replace)
    snap-<time>/            one complete, immutable snapshot
        manifest.json       format version, model, dimension, chunking, counts, versions, file checksums
        documents.jsonl     id, source, title, metadata, stored text (citations index into it)
        chunks.npy          int64 (n, 5): document row, start, end, first and last+1 sentence row
        sentences.npy       int64 (n, 3): document row, start, end
        sentence_vectors.npy float16 (n, dim), for the extractive generator (no embedding at question time)
        chunks.faiss        FAISS inner-product index of chunk vectors (row = chunk row): flat while
                            small, IVF-Flat from `RAG_IVF_MIN_CHUNKS` on (vectors.py)
        bm25/               bm25s index over the same chunks (row = chunk row)

A save writes a new snapshot beside the old one and then flips CURRENT, so a crash at any point
leaves the previous snapshot loadable. Loading checks the manifest, checksums and that vector
count, BM25 corpus and chunk store agree; any disagreement refuses the index with the reason.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .chunking import Chunk, ChunkingConfig, Span, chunk_document, split_sentences
from .documents import Document
from .durable import fsync_path
from .embedding import Embedder
from .errors import IndexCorruptError, IndexMismatchError, IndexNotFoundError
from .lexical import BM25Index
from .npyfile import NpyFile
from .vectors import (VectorIndexPolicy, build_vector_index, configure, describe, read_vector_index,
                      write_vector_index)

FORMAT_VERSION = 3  # 3: chunks as columns (chunks.npy), float16 sentence vectors, IVF
CURRENT = "CURRENT"


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

    def same_vectors(self, other: "IndexConfig") -> bool:
        """Whether stored vectors can be reused (only BM25-side settings differ)."""
        return (self.embed_model, self.dimension, self.embed_precision, self.chunk_size, self.chunk_overlap,
                self.sentence_splitter) == (other.embed_model, other.dimension, other.embed_precision,
                                            other.chunk_size, other.chunk_overlap, other.sentence_splitter)

    def differences(self, other: "IndexConfig") -> list[str]:
        mine, theirs = asdict(self), asdict(other)
        return [f"{k}: index has {theirs[k]!r}, settings say {mine[k]!r}" for k in mine if mine[k] != theirs[k]]


class ChunkTable(Sequence[Chunk]):
    """The chunks of an index as columns. A million `Chunk` objects each holding a copy of its text
    would not fit the memory target; a chunk is built from the columns and its document's text when
    asked for (only the few that are returned)."""

    def __init__(self, documents: Sequence[Document], doc_row: np.ndarray, bounds: np.ndarray,
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


@dataclass
class Index:
    """An immutable snapshot. Readers hold a reference; writers build a new one and swap it in."""

    config: IndexConfig
    documents: list[Document]
    chunk_doc_row: np.ndarray  # int64 (n_chunks,): the document row of each chunk, non-decreasing
    chunk_bounds: np.ndarray  # int64 (n_chunks, 2): start, end in the document's stored text
    chunk_sentences: np.ndarray  # int64 (n_chunks, 2): [first, last) row in the sentence table
    sentences: np.ndarray  # int64 (n_sentences, 3): document row, start, end
    sentence_vectors: np.ndarray | NpyFile  # float16 (n_sentences, dim); read on demand when loaded
    vectors: object  # faiss.Index over chunk rows (flat or IVF, see vectors.py)
    bm25: BM25Index
    journal_seq: int = 0  # the last journal change this snapshot contains
    vectors_source: str | None = None  # the file `vectors` was loaded from (memory-mapped), if any

    def __post_init__(self) -> None:
        self.doc_row = {d.id: i for i, d in enumerate(self.documents)}
        self.check_consistency()
        self.chunks = ChunkTable(self.documents, self.chunk_doc_row, self.chunk_bounds, self.chunk_sentences,
                                 self.sentences)

    # -- queries -------------------------------------------------------------------------
    def document(self, doc_id: str) -> Document | None:
        row = self.doc_row.get(doc_id)
        return None if row is None else self.documents[row]

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
        if problems:
            raise IndexCorruptError("index is inconsistent: " + "; ".join(problems))

    # -- persistence ---------------------------------------------------------------------
    def save(self, root: Path) -> Path:
        """Write a new snapshot under `root` and make it current atomically. Returns its directory."""
        root.mkdir(parents=True, exist_ok=True)
        name = f"snap-{time.time_ns()}-{uuid.uuid4().hex[:6]}"
        tmp = root / f".tmp-{name}"
        tmp.mkdir()
        try:
            with open(tmp / "documents.jsonl", "wb") as f:
                for d in self.documents:
                    f.write(_document_line(d))
            table = np.column_stack([self.chunk_doc_row, self.chunk_bounds, self.chunk_sentences]).astype(np.int64)
            np.save(tmp / "chunks.npy", table.reshape(-1, 5))
            np.save(tmp / "sentences.npy", np.asarray(self.sentences, dtype=np.int64))
            if isinstance(self.sentence_vectors, NpyFile) and self.sentence_vectors.dtype == np.float16:
                shutil.copyfile(self.sentence_vectors.path, tmp / "sentence_vectors.npy")  # unchanged rows
            else:
                np.save(tmp / "sentence_vectors.npy", np.asarray(self.sentence_vectors, dtype=np.float16))
            write_vector_index(self.vectors, str(tmp / "chunks.faiss"), self.vectors_source)
            self.bm25.save(tmp / "bm25")
            manifest = {
                "format_version": FORMAT_VERSION,
                "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "config": asdict(self.config),
                "journal_seq": self.journal_seq,
                "counts": {"documents": len(self.documents), "chunks": len(self.chunk_doc_row),
                           "sentences": int(len(self.sentences))},
                "vectors": describe(self.vectors),
                "versions": _versions(),
                "files": {p: _file_digest(tmp / p) for p in _snapshot_files(tmp)},
            }
            (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2))
            _fsync_tree(tmp)
            os.rename(tmp, root / name)
            fsync_path(root)
            pointer = root / f".{CURRENT}.{name}"
            pointer.write_text(name)
            fsync_path(pointer)
            os.replace(pointer, root / CURRENT)
            fsync_path(root)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        _remove_old_snapshots(root, keep=name)
        return root / name


def _snapshot_files(directory: Path) -> list[str]:
    return sorted(p.relative_to(directory).as_posix() for p in directory.rglob("*")
                  if p.is_file() and p.name != "manifest.json")


def _file_digest(path: Path) -> dict:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return {"sha256": h.hexdigest(), "bytes": path.stat().st_size}


def _fsync_tree(path: Path) -> None:
    for p in sorted(path.rglob("*"), reverse=True):
        fsync_path(p)
    fsync_path(path)


def _remove_old_snapshots(root: Path, keep: str) -> None:
    """Remove all but the current snapshot and the one before it (a reader that read CURRENT just
    before the flip may still be loading that one). Leftover temporary directories go too."""
    snaps = sorted((p for p in root.iterdir() if p.is_dir() and p.name.startswith("snap-")),
                   key=lambda p: int(p.name.split("-")[1]))
    previous = [p.name for p in snaps if p.name != keep][-1:]
    for p in root.iterdir():
        if p.is_dir() and p.name not in (keep, *previous) and p.name.startswith(("snap-", ".tmp-snap-")):
            shutil.rmtree(p, ignore_errors=True)


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("rag-service", "faiss-cpu", "bm25s", "sentence-transformers", "torch", "transformers"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "unknown"
    return out


def current_snapshot(root: Path) -> Path:
    pointer = root / CURRENT
    if not pointer.exists():
        raise IndexNotFoundError(f"no index at {root} (run `rag ingest PATH...` to build one)")
    name = pointer.read_text().strip()
    snap = root / name
    if not name.startswith("snap-") or not snap.is_dir():
        raise IndexCorruptError(f"{pointer} names snapshot {name!r}, which does not exist; "
                                f"rebuild with `rag ingest --rebuild PATH...`")
    return snap


def read_manifest(snap: Path, *, readable_formats: tuple[int, ...] = (FORMAT_VERSION,)) -> dict:
    try:
        manifest = json.loads((snap / "manifest.json").read_text())
    except (OSError, ValueError) as exc:
        raise IndexCorruptError(f"{snap / 'manifest.json'} is missing or unreadable: {exc}") from exc
    if manifest.get("format_version") not in readable_formats:
        raise IndexMismatchError(f"index format {manifest.get('format_version')} at {snap}; this version reads "
                                 f"format {FORMAT_VERSION}. Rebuild with `rag ingest --rebuild`.")
    return manifest


def read_stored_documents(root: Path) -> tuple[list[Document], int]:
    """The current snapshot's documents and journal position alone, checked against the manifest:
    enough to rebuild an index whose vector or BM25 files are damaged, or one of an older format
    (documents.jsonl has not changed since format 2)."""
    snap = current_snapshot(root)
    manifest = read_manifest(snap, readable_formats=(2, FORMAT_VERSION))
    meta = manifest["files"].get("documents.jsonl")
    path = snap / "documents.jsonl"
    if meta is None or not path.is_file() or _file_digest(path)["sha256"] != meta["sha256"]:
        raise IndexCorruptError(f"{path} is missing or corrupt too; rebuild from the original files with "
                                "`rag ingest --rebuild PATH...`")
    return _read_documents(path), int(manifest.get("journal_seq", 0))


def _read_documents(path: Path) -> list[Document]:
    with open(path, encoding="utf-8") as f:
        return [Document(id=r["id"], source=r["source"], title=r["title"], text=r["text"],
                         metadata=r.get("metadata") or {}) for r in map(json.loads, f)]


class DocumentTexts:
    """The texts of a snapshot's documents, read from documents.jsonl on demand (by line offset).

    Held in memory, a million chunks' documents took 1.3 GB (one non-ASCII character makes Python
    store a whole text at 2 bytes per character); a query reads the few documents it quotes."""

    CACHED = 64  # an answer quotes one document many times: keep the last few texts

    def __init__(self, path: Path, offsets: list[int]):
        self.path = path
        self._offsets = np.asarray(offsets, dtype=np.int64)
        self._fd = os.open(path, os.O_RDONLY)
        self._cache: OrderedDict[int, str] = OrderedDict()
        self._lock = threading.Lock()

    def line(self, row: int) -> bytes:
        """The document's stored JSON line, newline included (a snapshot save copies it as is)."""
        a, b = int(self._offsets[row]), int(self._offsets[row + 1])
        line = os.pread(self._fd, b - a, a)
        if len(line) != b - a:
            raise IndexCorruptError(f"{self.path} is shorter than when it was loaded; rebuild with "
                                    "`rag ingest --rebuild`")
        return line

    def text(self, row: int) -> str:
        with self._lock:
            if row in self._cache:
                self._cache.move_to_end(row)
                return self._cache[row]
        text = json.loads(self.line(row))["text"]
        with self._lock:
            self._cache[row] = text
            if len(self._cache) > self.CACHED:
                self._cache.popitem(last=False)
        return text

    def __del__(self) -> None:
        try:
            os.close(self._fd)
        except (OSError, AttributeError):
            pass


class StoredDocument(Document):
    """A document of a loaded snapshot: its text is read from the snapshot when asked for."""

    def __init__(self, texts: DocumentTexts, row: int, *, id: str, source: str, title: str, metadata: dict,
                 chars: int):
        object.__setattr__(self, "_texts", texts)
        object.__setattr__(self, "_row", row)
        object.__setattr__(self, "_chars", chars)
        for name, value in (("id", id), ("source", source), ("title", title), ("metadata", metadata)):
            object.__setattr__(self, name, value)

    @property
    def text(self) -> str:  # type: ignore[override]
        return self._texts.text(self._row)

    @property
    def chars(self) -> int:
        return self._chars

    def stored_line(self) -> bytes:
        return self._texts.line(self._row)


def _document_line(doc: Document) -> bytes:
    if isinstance(doc, StoredDocument):  # unchanged since it was loaded: no decoding and encoding again
        return doc.stored_line()
    return (json.dumps({"id": doc.id, "source": doc.source, "title": doc.title, "metadata": doc.metadata,
                        "text": doc.text}, ensure_ascii=False) + "\n").encode("utf-8")


def _read_stored_documents_lazily(path: Path) -> list[Document]:
    """Documents whose texts stay on disk (DocumentTexts); each line is parsed once, for its fields."""
    fields, offsets = [], [0]
    with open(path, "rb") as f:
        for line in f:
            r = json.loads(line)
            offsets.append(offsets[-1] + len(line))
            fields.append(dict(id=r["id"], source=r["source"], title=r["title"], metadata=r.get("metadata") or {},
                               chars=len(r["text"])))
    texts = DocumentTexts(path, offsets)
    return [StoredDocument(texts, row, **f) for row, f in enumerate(fields)]


def load_index(root: Path, expected: IndexConfig | None = None, *, verify_checksums: bool = True,
               policy: VectorIndexPolicy | None = None) -> Index:
    """Load the current snapshot, refusing it with a clear reason if it is corrupt or built otherwise.
    IVF lists are memory-mapped and sentence vectors read on demand, so they take memory only when
    read (and sentence vectors never count in the process's resident memory)."""
    snap = current_snapshot(root)
    manifest = read_manifest(snap)
    try:
        config = IndexConfig(**manifest["config"])
    except TypeError as exc:
        raise IndexCorruptError(f"{snap / 'manifest.json'} has an unreadable config ({exc}); "
                                "rebuild with `rag ingest --rebuild`") from exc
    if expected is not None:
        diffs = expected.differences(config)
        if diffs:
            raise IndexMismatchError(
                f"the index at {root} was built with other settings ({'; '.join(diffs)}). "
                "Rebuild it with `rag ingest --rebuild` (re-embeds the stored documents) or change the settings back.")
    for rel, meta in manifest["files"].items():
        path = snap / rel
        if not path.is_file():
            raise IndexCorruptError(f"index file {path} is missing; rebuild with `rag ingest --rebuild`")
        if path.stat().st_size != meta["bytes"] or (verify_checksums and _file_digest(path)["sha256"] != meta["sha256"]):
            raise IndexCorruptError(f"index file {path} is truncated or corrupt (checksum mismatch); "
                                    "rebuild with `rag ingest --rebuild`")
    try:
        documents = _read_stored_documents_lazily(snap / "documents.jsonl")
        table = np.load(snap / "chunks.npy")
        if table.ndim != 2 or table.shape[1] != 5:
            raise ValueError(f"chunks.npy has shape {table.shape}, expected (n, 5)")
        sentences = np.load(snap / "sentences.npy", mmap_mode="r")
        sentence_vectors = NpyFile(snap / "sentence_vectors.npy")
        vectors = read_vector_index(str(snap / "chunks.faiss"))
        bm25 = BM25Index.load(snap / "bm25")
    except IndexCorruptError:
        raise
    except Exception as exc:  # noqa: BLE001 - any parse failure means a broken index
        raise IndexCorruptError(f"index at {snap} cannot be read ({type(exc).__name__}: {exc}); "
                                "rebuild with `rag ingest --rebuild`") from exc
    counts = manifest["counts"]
    if (counts["documents"], counts["chunks"], counts["sentences"]) != (len(documents), len(table), len(sentences)):
        raise IndexCorruptError(f"index at {snap} holds {len(documents)} documents, {len(table)} chunks and "
                                f"{len(sentences)} sentences but its manifest says {counts}")
    if policy is not None:
        configure(vectors, policy)
    return Index(config=config, documents=documents, journal_seq=int(manifest.get("journal_seq", 0)),
                 chunk_doc_row=np.ascontiguousarray(table[:, 0]), chunk_bounds=np.ascontiguousarray(table[:, 1:3]),
                 chunk_sentences=np.ascontiguousarray(table[:, 3:5]), sentences=sentences,
                 sentence_vectors=sentence_vectors, vectors=vectors, bm25=bm25,
                 vectors_source=str(snap / "chunks.faiss"))


@dataclass
class _Plan:
    """What a new index holds, row by row, before any embedding: reused rows of the previous index
    (copied) and new texts (embedded)."""

    chunk_doc_row: list[int]
    chunk_bounds: list[tuple[int, int]]
    chunk_sentences: list[tuple[int, int]]
    sentences: list[tuple[int, int, int]]
    reused_chunks: list[tuple[int, int, int]]  # (new first row, old first row, count)
    reused_sentences: list[tuple[int, int, int]]
    new_chunks: list[tuple[int, str]]  # (row, text) to embed
    new_sentences: list[tuple[int, str]]


def _doc_ranges(doc_rows: np.ndarray, n_docs: int) -> np.ndarray:
    """[first, last) row of each document in a column of non-decreasing document rows."""
    return np.searchsorted(doc_rows, np.arange(n_docs + 1))


def _plan(documents: Sequence[Document], chunking: ChunkingConfig, reuse: Index | None) -> _Plan:
    plan = _Plan([], [], [], [], [], [], [], [])
    if reuse is not None:
        old_chunks = _doc_ranges(reuse.chunk_doc_row, len(reuse.documents))
        old_sents = _doc_ranges(np.asarray(reuse.sentences[:, 0]), len(reuse.documents))
    for row, doc in enumerate(documents):
        old = reuse.document(doc.id) if reuse is not None else None
        if old is not None and (old is doc or (old.title == doc.title and old.text == doc.text)):
            o = reuse.doc_row[doc.id]
            c0, c1 = int(old_chunks[o]), int(old_chunks[o + 1])
            s0, s1 = int(old_sents[o]), int(old_sents[o + 1])
            shift = len(plan.sentences) - s0
            plan.reused_chunks.append((len(plan.chunk_doc_row), c0, c1 - c0))
            plan.reused_sentences.append((len(plan.sentences), s0, s1 - s0))
            plan.sentences.extend((row, int(a), int(b)) for _, a, b in np.asarray(reuse.sentences[s0:s1]).tolist())
            plan.chunk_doc_row.extend([row] * (c1 - c0))
            plan.chunk_bounds.extend(map(tuple, reuse.chunk_bounds[c0:c1].tolist()))
            plan.chunk_sentences.extend((a + shift, b + shift) for a, b in reuse.chunk_sentences[c0:c1].tolist())
            continue
        sent_index: dict[tuple[int, int], int] = {}
        sections = split_sentences(doc.text, chunking.size)
        for section in sections:
            for span in section:
                sent_index[(span.start, span.end)] = len(plan.sentences)
                plan.new_sentences.append((len(plan.sentences), doc.text[span.start:span.end]))
                plan.sentences.append((row, span.start, span.end))
        for c in chunk_document(doc, chunking, sections):
            first = sent_index[(c.sentences[0].start, c.sentences[0].end)]
            plan.new_chunks.append((len(plan.chunk_doc_row), c.text))
            plan.chunk_doc_row.append(row)
            plan.chunk_bounds.append((c.start, c.end))
            plan.chunk_sentences.append((first, first + len(c.sentences)))
    return plan


EMBED_BATCH = 1024  # texts per encode call at ingest: large enough that the model's own batching dominates


def build_index(documents: Sequence[Document], embedder: Embedder, config: IndexConfig, *,
                previous: Index | None = None, progress: Callable[[int, int], None] | None = None,
                policy: VectorIndexPolicy = VectorIndexPolicy()) -> Index:
    """Chunk and embed `documents` into a new index.

    Documents that `previous` already holds with the same content and settings keep their chunks and
    vectors (no embedding); everything else is chunked and embedded in large batches, chunk texts
    first, then sentences.
    """
    chunking = ChunkingConfig(config.chunk_size, config.chunk_overlap)
    reuse = previous if previous is not None and previous.config.same_vectors(config) else None
    plan = _plan(documents, chunking, reuse)

    dim = config.dimension
    chunk_matrix = np.zeros((len(plan.chunk_doc_row), dim), dtype=np.float32)
    sent_matrix = np.zeros((len(plan.sentences), dim), dtype=np.float16)
    if plan.reused_chunks:
        old_vectors = reuse.chunk_vectors()
        for new, old, count in plan.reused_chunks:
            chunk_matrix[new:new + count] = old_vectors[old:old + count]
        del old_vectors
        for new, old, count in plan.reused_sentences:
            sent_matrix[new:new + count] = reuse.sentence_vectors[old:old + count]

    total = len(plan.new_chunks) + len(plan.new_sentences)
    done = 0
    if progress:
        progress(0, total)
    for items, target in ((plan.new_chunks, chunk_matrix), (plan.new_sentences, sent_matrix)):
        for k in range(0, len(items), EMBED_BATCH):
            part = items[k:k + EMBED_BATCH]
            target[[i for i, _ in part]] = embedder.encode([t for _, t in part])
            done += len(part)
            if progress:
                progress(done, total)

    titles = {d.id: d.title for d in documents}
    doc_ids = [d.id for d in documents]
    bm25 = BM25Index.build([documents[r].text[a:b] for r, (a, b) in zip(plan.chunk_doc_row, plan.chunk_bounds)],
                           [titles[doc_ids[r]] for r in plan.chunk_doc_row] if config.index_titles else None)
    vectors = build_vector_index(chunk_matrix, policy, reuse.vectors if reuse is not None else None)
    return Index(config=config, documents=list(documents),
                 chunk_doc_row=np.asarray(plan.chunk_doc_row, dtype=np.int64),
                 chunk_bounds=np.asarray(plan.chunk_bounds, dtype=np.int64).reshape(-1, 2),
                 chunk_sentences=np.asarray(plan.chunk_sentences, dtype=np.int64).reshape(-1, 2),
                 sentences=np.asarray(plan.sentences, dtype=np.int64).reshape(-1, 3),
                 sentence_vectors=sent_matrix, vectors=vectors, bm25=bm25)
