"""Which segments make the index: a manifest per generation, and `CURRENT` naming the live one.

    index/CURRENT                  the live manifest's file name, replaced atomically (os.replace)
    index/manifest-<gen>.json      format, settings, journal position, and each segment's name with
                                   the rows of its deleted documents; a SHA-256 of its own body
    index/seg-*/                   immutable segments (rag.snapshot)
    index/journal.jsonl            changes after the manifest's journal position (rag.journal)

Saving writes the segments that exist only in memory, then the new manifest, then flips CURRENT:
a crash at any point leaves the previous manifest, and every segment it names, in force. The
segments and manifests that neither the new nor the previous manifest names are removed after the
flip (a reader that read CURRENT just before it may still be loading the previous one).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable

from .documents import Document
from .durable import fsync_path
from .errors import IndexCorruptError, IndexMismatchError, IndexNotFoundError
from .index import Index, IndexConfig
from .segments import Segment, SegmentedIndex
from .snapshot import (FORMAT_VERSION, SEGMENT_PREFIX, STAGED_PREFIX, checked_config, load_segment, package_versions,
                       read_manifest, segment_documents, write_segment)
from .vectors import VectorIndexPolicy

log = logging.getLogger("rag.manifest")
CURRENT = "CURRENT"
MANIFEST_PREFIX = "manifest-"
STALE_STAGING_S = 3600.0  # staged or half-written directories older than this are a crash's leftovers


def _checksum(body: dict) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()


def _current_name(root: Path) -> str:
    pointer = root / CURRENT
    try:
        return pointer.read_text().strip()
    except FileNotFoundError:
        raise IndexNotFoundError(f"no index at {root} (run `rag ingest PATH...` to build one)") from None


def read_state(root: Path) -> dict:
    """The live manifest, checked."""
    name = _current_name(root)
    if name.startswith("snap-"):
        raise IndexMismatchError(f"the index at {root} is of an older format (one snapshot, format 3); "
                                 "rebuild it with `rag ingest --rebuild` (re-embeds its stored documents)")
    try:
        manifest = json.loads((root / name).read_text(encoding="utf-8"))
        body = {k: v for k, v in manifest.items() if k != "checksum"}
        intact = manifest.get("checksum") == _checksum(body)
    except (OSError, ValueError) as exc:
        raise IndexCorruptError(f"{root / name} is missing or unreadable ({exc}); rebuild with "
                                "`rag ingest --rebuild`") from exc
    if not intact:
        raise IndexCorruptError(f"{root / name} is damaged (checksum mismatch); rebuild with `rag ingest --rebuild`")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise IndexMismatchError(f"index format {manifest.get('format_version')} at {root}; this version reads "
                                 f"format {FORMAT_VERSION}. Rebuild with `rag ingest --rebuild`.")
    return manifest


def load_state(root: Path, expected: IndexConfig | None = None, *, policy: VectorIndexPolicy | None = None,
               loaded: Callable[[str], Index | None] = lambda name: None) -> SegmentedIndex:
    """The index the live manifest names. Segments already in memory (`loaded(name)`) are reused;
    the others are opened, checked by size (full checksums: `verify`). A segment that cannot be
    opened is left out and reported in `damaged`, so the rest stays searchable."""
    manifest = read_state(root)
    config = checked_config(manifest.get("config") or {}, root / _current_name(root), expected)
    segments, damaged = [], []
    for entry in manifest["segments"]:
        name = entry["name"]
        try:
            index = loaded(name) or load_segment(root / name, config, policy=policy)
            if (len(index.documents), len(index.chunk_doc_row)) != (entry["documents"], entry["chunks"]):
                raise IndexCorruptError(f"segment {name} holds {len(index.documents)} documents and "
                                        f"{len(index.chunk_doc_row)} chunks; the manifest says "
                                        f"{entry['documents']} and {entry['chunks']}")
        except (IndexCorruptError, IndexMismatchError) as exc:
            log.error("segment %s left out: %s", name, exc)
            damaged.append((name, str(exc), tuple(entry["deleted"])))
            continue
        segments.append(Segment(index, frozenset(entry["deleted"]), name))
    damaged.extend((d["name"], d["reason"], tuple(d.get("deleted", []))) for d in manifest.get("damaged", []))
    return SegmentedIndex(config, tuple(segments), int(manifest["journal_seq"]), int(manifest["generation"]),
                          damaged=tuple(damaged))


def save_state(view: SegmentedIndex, root: Path) -> SegmentedIndex:
    """Write `view`'s in-memory segments and a manifest naming all its segments, and make it live.
    Returns the view with every segment named. (Under the writer lock.)"""
    root.mkdir(parents=True, exist_ok=True)
    written: list[str] = []
    try:
        segments = []
        for seg in view.segments:
            if seg.name is None or not (root / seg.name).is_dir():  # in memory, or saved elsewhere
                name = write_segment(seg.index, root)
                written.append(name)
                seg = Segment(seg.index, seg.deleted, name)
            segments.append(seg)
        generation = max(view.generation, _latest_generation(root)) + 1
        body = {
            "format_version": FORMAT_VERSION,
            "generation": generation,
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "config": asdict(view.config),
            "journal_seq": view.journal_seq,
            "versions": package_versions(),
            "segments": [{"name": s.name, "documents": len(s.index.documents), "chunks": s.chunks,
                          "deleted": sorted(s.deleted)} for s in segments],
            # Segments that could not be opened stay named until repaired or rebuilt: dropping them
            # from the manifest would lose their documents for good.
            "damaged": [{"name": n, "reason": r, "deleted": list(d)} for n, r, d in view.damaged],
        }
        name = f"{MANIFEST_PREFIX}{generation:08d}.json"
        path, pointer = root / name, root / f".{CURRENT}.{name}"
        with open(path, "w", encoding="utf-8") as f:
            json.dump({**body, "checksum": _checksum(body)}, f, indent=1, ensure_ascii=False)
            f.flush()
            os.fsync(f.fileno())
        pointer.write_text(name)
        fsync_path(pointer)
        previous = _current_name(root) if (root / CURRENT).exists() else None
        os.replace(pointer, root / CURRENT)
        fsync_path(root)
    except BaseException:
        for n in written:  # nothing names them: a failed save (a full disk) leaves no pieces
            shutil.rmtree(root / n, ignore_errors=True)
        raise
    _remove_unreferenced(root, keep={name, *([previous] if previous else [])})
    return SegmentedIndex(view.config, tuple(segments), view.journal_seq, generation, damaged=view.damaged)


def _latest_generation(root: Path) -> int:
    gens = [int(p.name[len(MANIFEST_PREFIX):-5]) for p in root.glob(f"{MANIFEST_PREFIX}*.json")
            if p.name[len(MANIFEST_PREFIX):-5].isdigit()]
    return max(gens, default=0)


def referenced(root: Path, manifest_name: str) -> set[str]:
    try:
        manifest = json.loads((root / manifest_name).read_text(encoding="utf-8"))
        return {s["name"] for s in manifest["segments"]} | {d["name"] for d in manifest.get("damaged", [])}
    except (OSError, ValueError, KeyError, TypeError):
        return set()


def _remove_unreferenced(root: Path, keep: set[str]) -> None:
    names = set().union(*(referenced(root, m) for m in keep))
    now = time.time()
    for p in root.iterdir():
        if p.name in keep or p.name in names:
            continue
        if p.name.startswith(MANIFEST_PREFIX) and p.is_file():
            p.unlink(missing_ok=True)
        elif p.is_dir() and (p.name.startswith((SEGMENT_PREFIX, "snap-")) or (
                p.name.startswith((".tmp-", STAGED_PREFIX, ".tmp-snap-")) and now - p.stat().st_mtime > STALE_STAGING_S)):
            shutil.rmtree(p, ignore_errors=True)


def stored_documents(root: Path) -> tuple[list[Document], int]:
    """Every live document the stored index holds, read from its segments' documents files alone,
    and its journal position: what a rebuild starts from when vectors or postings are damaged, or
    when the index is of an older format (one snapshot directory)."""
    name = _current_name(root)
    if name.startswith("snap-"):
        old = read_manifest(root / name, readable_formats=(2, 3))
        return segment_documents(root / name), int(old.get("journal_seq", 0))
    manifest = read_state(root)
    docs: list[Document] = []
    for entry in [*manifest["segments"], *manifest.get("damaged", [])]:
        deleted = set(entry.get("deleted", []))
        docs.extend(d for r, d in enumerate(segment_documents(root / entry["name"])) if r not in deleted)
    return docs, int(manifest["journal_seq"])


def save_index(index: Index | SegmentedIndex, root: Path) -> SegmentedIndex:
    """Store an index under `root` as the live one (a single built index becomes one segment)."""
    view = index if isinstance(index, SegmentedIndex) else SegmentedIndex.of(index)
    return save_state(view, root)


def load_index(root: Path, expected: IndexConfig | None = None, *,
               policy: VectorIndexPolicy | None = None) -> SegmentedIndex:
    return load_state(root, expected, policy=policy)
