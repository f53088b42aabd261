"""The index on disk: atomic, versioned, checksummed snapshots.

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
import weakref
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .documents import Document
from .durable import fsync_path
from .errors import IndexCorruptError, IndexMismatchError, IndexNotFoundError
from .index import Index, IndexConfig
from .lexical import BM25Index
from .npyfile import NpyFile
from .records import document_from_record, document_line
from .vectors import VectorIndexPolicy, configure, describe, read_vector_index, write_vector_index

FORMAT_VERSION = 3  # 3: chunks as columns (chunks.npy), float16 sentence vectors, IVF
CURRENT = "CURRENT"


def save_index(index: Index, root: Path) -> Path:
    """Write a new snapshot under `root` and make it current atomically. Returns its directory."""
    root.mkdir(parents=True, exist_ok=True)
    name = f"snap-{time.time_ns()}-{uuid.uuid4().hex[:6]}"
    tmp = root / f".tmp-{name}"
    pointer = root / f".{CURRENT}.{name}"
    flipped = False
    tmp.mkdir()
    try:
        with open(tmp / "documents.jsonl", "wb") as f:
            for d in index.documents:
                f.write(_document_line(d))
        table = np.column_stack([index.chunk_doc_row, index.chunk_bounds, index.chunk_sentences]).astype(np.int64)
        np.save(tmp / "chunks.npy", table.reshape(-1, 5))
        np.save(tmp / "sentences.npy", np.asarray(index.sentences, dtype=np.int64))
        if isinstance(index.sentence_vectors, NpyFile) and index.sentence_vectors.dtype == np.float16:
            shutil.copyfile(index.sentence_vectors.path, tmp / "sentence_vectors.npy")  # unchanged rows
        else:
            np.save(tmp / "sentence_vectors.npy", np.asarray(index.sentence_vectors, dtype=np.float16))
        write_vector_index(index.vectors, str(tmp / "chunks.faiss"), index.vectors_source)
        index.bm25.save(tmp / "bm25")
        manifest = {
            "format_version": FORMAT_VERSION,
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "config": asdict(index.config),
            "journal_seq": index.journal_seq,
            "counts": {"documents": len(index.documents), "chunks": len(index.chunk_doc_row),
                       "sentences": int(len(index.sentences))},
            "vectors": describe(index.vectors),
            "versions": package_versions(),
            "files": {p: _file_digest(tmp / p) for p in _snapshot_files(tmp)},
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2))
        _fsync_tree(tmp)
        os.rename(tmp, root / name)
        fsync_path(root)
        pointer.write_text(name)
        fsync_path(pointer)
        os.replace(pointer, root / CURRENT)
        flipped = True
        fsync_path(root)
    except BaseException:
        # Whatever step failed (a full disk, say), the previous snapshot stays current; remove this
        # one's pieces so that repeated failures do not fill the disk further.
        shutil.rmtree(tmp, ignore_errors=True)
        pointer.unlink(missing_ok=True)
        if not flipped:
            shutil.rmtree(root / name, ignore_errors=True)
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


def _read_stored_documents_lazily(path: Path) -> list[StoredDocument]:
    """Documents whose texts stay on disk (DocumentTexts); each line is parsed once, for its fields."""
    fields, offsets = [], [0]
    with open(path, "rb") as f:
        for line in f:
            r = json.loads(line)
            offsets.append(offsets[-1] + len(line))
            fields.append(dict(id=r["id"], source=r["source"], title=r["title"], metadata=r.get("metadata") or {},
                               chars=len(r["text"])))
    texts = DocumentTexts(path, offsets)
    return [StoredDocument(texts=texts, row=row, **f) for row, f in enumerate(fields)]


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

