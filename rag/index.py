"""The index: documents, chunks, sentences, FAISS vectors and BM25, persisted as atomic snapshots.

On disk (under `RAG_DATA_DIR/index/`):

    CURRENT                 name of the live snapshot, replaced atomically (os.replace)
    snap-<time>/            one complete, immutable snapshot
        manifest.json       format version, model, dimension, chunking, counts, versions, file checksums
        documents.jsonl     id, source, title, metadata, stored text (citations index into it)
        chunks.jsonl        chunk id, document id, start, end, sentence range
        sentences.npy       int64 (n, 3): document row, start, end
        sentence_vectors.npy float32 (n, dim), for the extractive generator (no embedding at question time)
        chunks.faiss        FAISS inner-product index of chunk vectors (row = chunk row)
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
import time
import uuid
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

FORMAT_VERSION = 2
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

    def same_vectors(self, other: "IndexConfig") -> bool:
        """Whether stored vectors can be reused (only BM25-side settings differ)."""
        return (self.embed_model, self.dimension, self.embed_precision, self.chunk_size, self.chunk_overlap) == (
            other.embed_model, other.dimension, other.embed_precision, other.chunk_size, other.chunk_overlap)

    def differences(self, other: "IndexConfig") -> list[str]:
        mine, theirs = asdict(self), asdict(other)
        return [f"{k}: index has {theirs[k]!r}, settings say {mine[k]!r}" for k in mine if mine[k] != theirs[k]]


@dataclass
class Index:
    """An immutable snapshot. Readers hold a reference; writers build a new one and swap it in."""

    config: IndexConfig
    documents: list[Document]
    chunks: list[Chunk]
    chunk_sentences: np.ndarray  # int64 (n_chunks, 2): [first, last) row in the sentence table
    sentences: np.ndarray  # int64 (n_sentences, 3): document row, start, end
    sentence_vectors: np.ndarray  # float32 (n_sentences, dim)
    vectors: object  # faiss.Index over chunk rows
    bm25: BM25Index
    journal_seq: int = 0  # the last journal change this snapshot contains

    def __post_init__(self) -> None:
        self.doc_row = {d.id: i for i, d in enumerate(self.documents)}
        self.chunk_doc_row = np.array([self.doc_row[c.document_id] for c in self.chunks], dtype=np.int64)
        self.check_consistency()

    # -- queries -------------------------------------------------------------------------
    def document(self, doc_id: str) -> Document | None:
        row = self.doc_row.get(doc_id)
        return None if row is None else self.documents[row]

    def chunk_vectors(self) -> np.ndarray:
        n = len(self.chunks)
        if n == 0:
            return np.zeros((0, self.config.dimension), dtype=np.float32)
        return self.vectors.reconstruct_n(0, n)

    def check_consistency(self) -> None:
        n_chunks = len(self.chunks)
        problems = []
        if self.vectors.ntotal != n_chunks:
            problems.append(f"FAISS holds {self.vectors.ntotal} vectors for {n_chunks} chunks")
        if self.vectors.d != self.config.dimension:
            problems.append(f"FAISS dimension {self.vectors.d} != manifest dimension {self.config.dimension}")
        if self.bm25.size != n_chunks:
            problems.append(f"BM25 corpus has {self.bm25.size} entries for {n_chunks} chunks")
        if self.chunk_sentences.shape != (n_chunks, 2):
            problems.append(f"sentence ranges cover {self.chunk_sentences.shape[0]} chunks, not {n_chunks}")
        if self.sentence_vectors.shape != (len(self.sentences), self.config.dimension):
            problems.append(f"{self.sentence_vectors.shape[0]} sentence vectors for {len(self.sentences)} sentences")
        if problems:
            raise IndexCorruptError("index is inconsistent: " + "; ".join(problems))

    # -- persistence ---------------------------------------------------------------------
    def save(self, root: Path) -> Path:
        """Write a new snapshot under `root` and make it current atomically. Returns its directory."""
        import faiss

        root.mkdir(parents=True, exist_ok=True)
        name = f"snap-{time.time_ns()}-{uuid.uuid4().hex[:6]}"
        tmp = root / f".tmp-{name}"
        tmp.mkdir()
        try:
            with open(tmp / "documents.jsonl", "w", encoding="utf-8") as f:
                for d in self.documents:
                    f.write(json.dumps({"id": d.id, "source": d.source, "title": d.title, "metadata": d.metadata,
                                        "text": d.text}, ensure_ascii=False) + "\n")
            with open(tmp / "chunks.jsonl", "w", encoding="utf-8") as f:
                for c, (s0, s1) in zip(self.chunks, self.chunk_sentences.tolist()):
                    f.write(json.dumps({"id": c.id, "document_id": c.document_id, "start": c.start, "end": c.end,
                                        "sentences": [s0, s1]}) + "\n")
            np.save(tmp / "sentences.npy", self.sentences)
            np.save(tmp / "sentence_vectors.npy", self.sentence_vectors)
            faiss.write_index(self.vectors, str(tmp / "chunks.faiss"))
            self.bm25.save(tmp / "bm25")
            manifest = {
                "format_version": FORMAT_VERSION,
                "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "config": asdict(self.config),
                "journal_seq": self.journal_seq,
                "counts": {"documents": len(self.documents), "chunks": len(self.chunks),
                           "sentences": int(len(self.sentences))},
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


def read_manifest(snap: Path) -> dict:
    try:
        manifest = json.loads((snap / "manifest.json").read_text())
    except (OSError, ValueError) as exc:
        raise IndexCorruptError(f"{snap / 'manifest.json'} is missing or unreadable: {exc}") from exc
    if manifest.get("format_version") != FORMAT_VERSION:
        raise IndexMismatchError(f"index format {manifest.get('format_version')} at {snap}; this version reads "
                                 f"format {FORMAT_VERSION}. Rebuild with `rag ingest --rebuild`.")
    return manifest


def read_stored_documents(root: Path) -> tuple[list[Document], int]:
    """The current snapshot's documents and journal position alone, checked against the manifest:
    enough to rebuild an index whose vector or BM25 files are damaged."""
    snap = current_snapshot(root)
    manifest = read_manifest(snap)
    meta = manifest["files"].get("documents.jsonl")
    path = snap / "documents.jsonl"
    if meta is None or not path.is_file() or _file_digest(path)["sha256"] != meta["sha256"]:
        raise IndexCorruptError(f"{path} is missing or corrupt too; rebuild from the original files with "
                                "`rag ingest --rebuild PATH...`")
    with open(path, encoding="utf-8") as f:
        docs = [Document(id=r["id"], source=r["source"], title=r["title"], text=r["text"],
                         metadata=r.get("metadata") or {}) for r in map(json.loads, f)]
    return docs, int(manifest.get("journal_seq", 0))


def load_index(root: Path, expected: IndexConfig | None = None, *, verify_checksums: bool = True) -> Index:
    """Load the current snapshot, refusing it with a clear reason if it is corrupt or built otherwise."""
    import faiss

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
        documents = []
        with open(snap / "documents.jsonl", encoding="utf-8") as f:
            for line in f:
                r = json.loads(line)
                documents.append(Document(id=r["id"], source=r["source"], title=r["title"], text=r["text"],
                                          metadata=r.get("metadata") or {}))
        doc_text = {d.id: d.text for d in documents}
        sentences = np.load(snap / "sentences.npy")
        chunks, ranges = [], []
        with open(snap / "chunks.jsonl", encoding="utf-8") as f:
            for line in f:
                r = json.loads(line)
                s0, s1 = r["sentences"]
                spans = tuple(Span(int(a), int(b)) for _, a, b in sentences[s0:s1].tolist())
                chunks.append(Chunk(id=r["id"], document_id=r["document_id"], start=r["start"], end=r["end"],
                                    text=doc_text[r["document_id"]][r["start"]:r["end"]], sentences=spans))
                ranges.append((s0, s1))
        vectors = faiss.read_index(str(snap / "chunks.faiss"))
        bm25 = BM25Index.load(snap / "bm25")
        sentence_vectors = np.load(snap / "sentence_vectors.npy")
    except IndexCorruptError:
        raise
    except Exception as exc:  # noqa: BLE001 - any parse failure means a broken index
        raise IndexCorruptError(f"index at {snap} cannot be read ({type(exc).__name__}: {exc}); "
                                "rebuild with `rag ingest --rebuild`") from exc
    counts = manifest["counts"]
    if (counts["documents"], counts["chunks"], counts["sentences"]) != (len(documents), len(chunks), len(sentences)):
        raise IndexCorruptError(f"index at {snap} holds {len(documents)} documents, {len(chunks)} chunks and "
                                f"{len(sentences)} sentences but its manifest says {counts}")
    return Index(config=config, documents=documents, chunks=chunks, journal_seq=int(manifest.get("journal_seq", 0)),
                 chunk_sentences=np.asarray(ranges, dtype=np.int64).reshape(-1, 2), sentences=sentences,
                 sentence_vectors=sentence_vectors, vectors=vectors, bm25=bm25)


def build_index(documents: Sequence[Document], embedder: Embedder, config: IndexConfig, *,
                previous: Index | None = None, progress: Callable[[int, int], None] | None = None) -> Index:
    """Chunk and embed `documents` into a new index.

    Documents that `previous` already holds with the same content and settings keep their chunks and
    vectors (no embedding); everything else is chunked and embedded in large batches.
    """
    import faiss

    chunking = ChunkingConfig(config.chunk_size, config.chunk_overlap)
    reuse = previous if previous is not None and previous.config.same_vectors(config) else None
    prev_chunk_vectors = reuse.chunk_vectors() if reuse is not None else None

    all_chunks: list[Chunk] = []
    ranges: list[tuple[int, int]] = []
    sentence_rows: list[tuple[int, int, int]] = []
    chunk_vecs: list[np.ndarray | None] = []  # per chunk: reused vector or None (to embed)
    sent_vecs: list[np.ndarray | None] = []
    to_embed_chunks: list[tuple[int, str]] = []
    to_embed_sents: list[tuple[int, str]] = []

    for row, doc in enumerate(documents):
        old = reuse.document(doc.id) if reuse is not None else None
        if old is not None and old.text == doc.text and old.title == doc.title:
            old_row = reuse.doc_row[doc.id]
            old_idx = np.nonzero(reuse.chunk_doc_row == old_row)[0]
            s_first = len(sentence_rows)
            old_sent_idx = np.nonzero(reuse.sentences[:, 0] == old_row)[0]
            base = int(old_sent_idx[0]) if len(old_sent_idx) else 0
            for i in old_sent_idx:
                _, a, b = reuse.sentences[i].tolist()
                sentence_rows.append((row, a, b))
                sent_vecs.append(reuse.sentence_vectors[i])
            for i in old_idx:
                c = reuse.chunks[i]
                s0, s1 = reuse.chunk_sentences[i].tolist()
                all_chunks.append(c)
                ranges.append((s_first + s0 - base, s_first + s1 - base))
                chunk_vecs.append(prev_chunk_vectors[i])
            continue
        sections = split_sentences(doc.text, chunking.size)
        sent_index: dict[tuple[int, int], int] = {}
        for section in sections:
            for span in section:
                sent_index[(span.start, span.end)] = len(sentence_rows)
                to_embed_sents.append((len(sentence_rows), doc.text[span.start:span.end]))
                sentence_rows.append((row, span.start, span.end))
                sent_vecs.append(None)
        for c in chunk_document(doc, chunking):
            first = sent_index[(c.sentences[0].start, c.sentences[0].end)]
            ranges.append((first, first + len(c.sentences)))
            to_embed_chunks.append((len(all_chunks), c.text))
            all_chunks.append(c)
            chunk_vecs.append(None)

    total = len(to_embed_chunks) + len(to_embed_sents)
    done = 0
    batch = 1024

    def embed_into(items: list[tuple[int, str]], target: list) -> None:
        nonlocal done
        for k in range(0, len(items), batch):
            part = items[k:k + batch]
            vecs = embedder.encode([t for _, t in part])
            for (i, _), v in zip(part, vecs):
                target[i] = v
            done += len(part)
            if progress:
                progress(done, total)

    if progress:
        progress(0, total)
    embed_into(to_embed_chunks, chunk_vecs)
    embed_into(to_embed_sents, sent_vecs)

    dim = config.dimension
    chunk_matrix = np.vstack(chunk_vecs).astype(np.float32) if chunk_vecs else np.zeros((0, dim), np.float32)
    sent_matrix = np.vstack(sent_vecs).astype(np.float32) if sent_vecs else np.zeros((0, dim), np.float32)
    vectors = faiss.IndexFlatIP(dim)
    if len(chunk_matrix):
        vectors.add(chunk_matrix)
    titles = {d.id: d.title for d in documents}
    bm25 = BM25Index.build([c.text for c in all_chunks],
                           [titles[c.document_id] for c in all_chunks] if config.index_titles else None)
    return Index(config=config, documents=list(documents), chunks=all_chunks,
                 chunk_sentences=np.asarray(ranges, dtype=np.int64).reshape(-1, 2),
                 sentences=np.asarray(sentence_rows, dtype=np.int64).reshape(-1, 3),
                 sentence_vectors=sent_matrix, vectors=vectors, bm25=bm25)

