"""A segment on disk: one immutable directory per segment, checksummed.

Under `RAG_DATA_DIR/index/` (the list of live segments is `rag.manifest`'s):

    seg-<time>-<id>/        one segment, never changed once written
        manifest.json       format version, model, dimension, chunking, counts, versions, file sizes and checksums
        documents.jsonl     id, source, title, metadata, stored text (citations index into it)
        chunks.npy          int64 (n, 5): document row, start, end, first and last+1 sentence row
        sentences.npy       int64 (n, 3): document row, start, end
        sentence_vectors.npy float16 (n, dim), for the extractive generator (no embedding at question time)
        chunks.faiss        FAISS inner-product index of chunk vectors (row = chunk row): flat while
                            small, IVF-Flat from `RAG_IVF_MIN_CHUNKS` on (vectors.py)
        bm25/               term-frequency postings over the same chunks (lexical.py)
        sentence_terms.*.npy each sentence's tokens as 64-bit hashes, CSR (sentence_terms.py; absent in
                            segments written before them, whose sentences are tokenized when read)

A segment is written under a temporary name, fsynced and renamed into place, so a directory with
a segment's name is complete. Loading checks the manifest, every file's size (cheap: a start reads
no data) and that vector count, BM25 and chunk store agree; `verify_segment` compares the full
checksums (in the background after a start, and in `rag check`).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
import time
import uuid
import weakref
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from .documents import Document
from .durable import fsync_path
from .errors import IndexCorruptError, IndexMismatchError
from .index import Index, IndexConfig
from .lazy_documents import LazyDocuments
from .lexical import BM25Index
from . import sentence_terms
from .npyfile import NpyFile, save_npy
from .records import document_from_record, document_line
from .vectors import VectorIndexPolicy, configure, describe, read_vector_index, write_vector_index



FORMAT_VERSION = 4  # 4: segments with term-frequency BM25 postings
SEGMENT_PREFIX = "seg-"


def new_segment_name() -> str:
    return f"{SEGMENT_PREFIX}{time.time_ns()}-{uuid.uuid4().hex[:6]}"


STAGED_PREFIX = ".staged-"


def write_segment(index: Index, root: Path, *, staged: bool = False) -> str:
    """Write `index` as a new segment directory under `root`; returns its name. Nothing refers to
    it until a manifest names it (a crash before that leaves an unreferenced directory, removed at
    the next start). `staged`: the directory is named `.staged-<name>` until `publish_segment`
    (a background merge writes without the writer lock, and only lock holders name segments)."""
    root.mkdir(parents=True, exist_ok=True)
    name = (STAGED_PREFIX if staged else "") + new_segment_name()
    tmp = root / f".tmp-{name}"
    tmp.mkdir()
    try:
        offsets, fields = [0], []
        with open(tmp / "documents.jsonl", "wb") as f:
            for d in index.documents:
                line = _document_line(d)
                f.write(line)
                offsets.append(offsets[-1] + len(line))
                fields.append({"id": d.id, "source": d.source, "title": d.title, "metadata": d.metadata,
                               "chars": len(d.text) if not isinstance(d, StoredDocument) else d.chars})
        # The fields without the texts, and where each line starts: a start reads these, not the texts.
        np.save(tmp / "documents.offsets.npy", np.asarray(offsets, dtype=np.int64))
        with open(tmp / "documents.fields.jsonl", "w", encoding="utf-8") as f:
            for r in fields:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
        table = np.column_stack([index.chunk_doc_row, index.chunk_bounds, index.chunk_sentences]).astype(np.int64)
        np.save(tmp / "chunks.npy", table.reshape(-1, 5))
        np.save(tmp / "sentences.npy", np.asarray(index.sentences, dtype=np.int64))
        save_npy(tmp / "sentence_vectors.npy", index.sentence_vectors, np.float16)
        write_vector_index(index.vectors, str(tmp / "chunks.faiss"), index.vectors_source)
        index.bm25.save(tmp / "bm25")
        if index.sentence_terms is not None:
            index.sentence_terms.save(tmp)
        manifest = {
            "format_version": FORMAT_VERSION,
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "config": asdict(index.config),
            "counts": {"documents": len(index.documents), "chunks": len(index.chunk_doc_row),
                       "sentences": int(len(index.sentences))},
            "vectors": describe(index.vectors),
            "sentence_terms": sentence_terms.VERSION if index.sentence_terms is not None else None,
            "versions": package_versions(),
            "files": {p: _file_digest(tmp / p) for p in _snapshot_files(tmp)},
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2))
        _fsync_tree(tmp)
        os.rename(tmp, root / name)
        fsync_path(root)
    except BaseException:
        # Whatever step failed (a full disk, say), remove this segment's pieces so that repeated
        # failures do not fill the disk further.
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(root / name, ignore_errors=True)
        raise
    return name


def publish_segment(root: Path, staged: str) -> str:
    """Give a staged segment its segment name (under the writer lock); returns it."""
    name = staged[len(STAGED_PREFIX):]
    os.rename(root / staged, root / name)
    fsync_path(root)
    return name


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


def package_versions() -> dict[str, str]:
    """Versions of the packages that decide what an index holds (recorded in each manifest)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("rag-service", "faiss-cpu", "bm25s", "sentence-transformers", "torch", "transformers"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "unknown"
    return out


def read_manifest(snap: Path, *, readable_formats: tuple[int, ...] = (FORMAT_VERSION,)) -> dict:
    try:
        manifest = json.loads((snap / "manifest.json").read_text())
    except (OSError, ValueError) as exc:
        raise IndexCorruptError(f"{snap / 'manifest.json'} is missing or unreadable: {exc}") from exc
    if manifest.get("format_version") not in readable_formats:
        raise IndexMismatchError(f"index format {manifest.get('format_version')} at {snap}; this version reads "
                                 f"format {FORMAT_VERSION}. Rebuild with `rag ingest --rebuild`.")
    return manifest


def segment_documents(directory: Path) -> list[Document]:
    """A segment's documents alone, checked against its manifest: enough to rebuild a segment whose
    vector or BM25 files are damaged, or an index of an older format (documents.jsonl has not
    changed since format 2)."""
    manifest = read_manifest(directory, readable_formats=(2, 3, FORMAT_VERSION))
    meta = manifest["files"].get("documents.jsonl")
    path = directory / "documents.jsonl"
    if meta is None or not path.is_file() or _file_digest(path)["sha256"] != meta["sha256"]:
        raise IndexCorruptError(f"{path} is missing or corrupt too; rebuild from the original files with "
                                "`rag ingest --rebuild PATH...`")
    return _read_documents(path)


def _read_documents(path: Path) -> list[Document]:
    with open(path, encoding="utf-8") as f:
        return [document_from_record(r) for r in map(json.loads, f)]


class DocumentTexts:
    """The texts of a snapshot's documents, read from documents.jsonl on demand (by line offset).

    Held in memory, a million chunks' documents took 1.3 GB (one non-ASCII character makes Python
    store a whole text at 2 bytes per character); a query reads the few documents it quotes.
    The file stays open while any reader holds the snapshot (a reader may outlive the snapshot's
    directory): `close()` releases it, and so does the last reference going away (weakref.finalize)."""

    CACHED = 64  # an answer quotes one document many times: keep the last few texts

    def __init__(self, path: Path, offsets: list[int]):
        self.path = path
        self._offsets = np.asarray(offsets, dtype=np.int64)
        fd = os.open(path, os.O_RDONLY)
        self._fd = fd
        self._release = weakref.finalize(self, os.close, fd)
        self._cache: OrderedDict[int, str] = OrderedDict()
        self._lock = threading.Lock()

    def close(self) -> None:
        self._release()

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


@dataclass(frozen=True, eq=False)
class StoredDocument:
    """A document of a loaded snapshot (the fields of `Document`): its text is read from the
    snapshot when asked for."""

    id: str
    source: str
    title: str
    metadata: dict
    chars: int
    texts: DocumentTexts = field(repr=False)
    row: int = field(repr=False)

    @property
    def text(self) -> str:
        return self.texts.text(self.row)

    @property
    def content_hash(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()

    def stored_line(self) -> bytes:
        return self.texts.line(self.row)


def _document_line(doc) -> bytes:
    if isinstance(doc, StoredDocument):  # unchanged since it was loaded: no decoding and encoding again
        return doc.stored_line()
    return document_line(doc)


def _read_stored_documents_lazily(path: Path) -> Sequence[StoredDocument]:
    """Documents whose texts stay on disk (DocumentTexts). Their fields and line offsets come from
    the small files beside documents.jsonl (parsing every text at a million chunks took seconds)."""
    offsets_path, fields_path = path.with_name("documents.offsets.npy"), path.with_name("documents.fields.jsonl")
    if offsets_path.is_file() and fields_path.is_file():  # each document made when first read
        offsets = np.load(offsets_path)
        documents = LazyDocuments(fields_path.read_bytes(), lambda row, f: StoredDocument(
            texts=texts, row=row, **{**f, "metadata": f.get("metadata") or {}}))
        if len(offsets) != len(documents) + 1 or offsets[-1] != path.stat().st_size:
            raise IndexCorruptError(f"{fields_path.parent}: the documents' fields disagree with documents.jsonl")
        texts = DocumentTexts(path, offsets)
        return documents
    fields, offsets = [], [0]
    with open(path, "rb") as f:
        for line in f:
            r = json.loads(line)
            offsets.append(offsets[-1] + len(line))
            fields.append(dict(id=r["id"], source=r["source"], title=r["title"], metadata=r.get("metadata") or {},
                               chars=len(r["text"])))
    texts = DocumentTexts(path, offsets)
    return [StoredDocument(texts=texts, row=row, **f) for row, f in enumerate(fields)]


def checked_config(raw, where: Path, expected: IndexConfig | None) -> IndexConfig:
    """The settings a manifest at `where` records, refused when unreadable or (with `expected`)
    different from what the current settings would build."""
    try:
        config = IndexConfig(**raw)
    except TypeError as exc:
        raise IndexCorruptError(f"{where} has an unreadable config ({exc}); rebuild with `rag ingest --rebuild`") from exc
    if expected is not None and (diffs := expected.differences(config)):
        raise IndexMismatchError(
            f"the index at {where.parent} was built with other settings ({'; '.join(diffs)}). "
            "Rebuild it with `rag ingest --rebuild` (re-embeds the stored documents) or change the settings back.")
    return config


def verify_segment(directory: Path) -> list[str]:
    """Every problem with a segment's files against its manifest's checksums (empty when intact)."""
    try:
        manifest = read_manifest(directory)
    except IndexCorruptError as exc:
        return [str(exc)]
    problems = []
    for rel, meta in manifest["files"].items():
        path = directory / rel
        if not path.is_file():
            problems.append(f"{path} is missing")
        elif path.stat().st_size != meta["bytes"] or _file_digest(path)["sha256"] != meta["sha256"]:
            problems.append(f"{path} is truncated or corrupt (checksum mismatch)")
    return problems


def load_segment(directory: Path, expected: IndexConfig | None = None, *, verify_checksums: bool = False,
                 policy: VectorIndexPolicy | None = None) -> Index:
    """Load a segment, refusing it with a clear reason if it is damaged or built otherwise. Files are
    checked by size (full checksums with `verify_checksums`, or `verify_segment`). IVF lists are
    memory-mapped and sentence vectors and postings read on demand, so a segment takes memory only
    when read."""
    snap = directory
    if not snap.is_dir():
        raise IndexCorruptError(f"segment {snap} does not exist; rebuild with `rag ingest --rebuild`")
    manifest = read_manifest(snap)
    config = checked_config(manifest.get("config"), snap / "manifest.json", expected)
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
        terms = sentence_terms.SentenceTerms.load(snap, manifest.get("sentence_terms"), len(sentences))
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
    return Index(config=config, documents=documents,
                 chunk_doc_row=np.ascontiguousarray(table[:, 0]), chunk_bounds=np.ascontiguousarray(table[:, 1:3]),
                 chunk_sentences=np.ascontiguousarray(table[:, 3:5]), sentences=sentences,
                 sentence_vectors=sentence_vectors, vectors=vectors, bm25=bm25,
                 vectors_source=str(snap / "chunks.faiss"), sentence_terms=terms)

