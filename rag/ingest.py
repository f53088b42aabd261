"""Bulk ingest: bring the index in line with files (or a list of documents) and write a snapshot."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from .documents import (Document, SkippedFile, fetch_options_for, is_url, limits_for, load_paths,
                        same_document)
from .embedding import batch_threads
from .errors import IndexCorruptError, IndexMismatchError
from .store import IndexStore


@dataclass
class IngestReport:
    documents: int = 0  # documents in the index afterwards
    chunks: int = 0
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: list[str] = field(default_factory=list)  # sources of the documents removed
    skipped: list[SkippedFile] = field(default_factory=list)
    rebuilt: str | None = None  # why everything was re-embedded, if it was


def file_origin(doc) -> Path | None:
    """Where a file-backed document came from: the absolute path recorded when it was loaded
    (`metadata.origin`; API documents and uploads have none, web pages a URL, so no directory scan
    ever removes them)."""
    origin = doc.metadata.get("origin") if isinstance(doc.metadata, dict) else None
    return Path(origin) if isinstance(origin, str) and origin.startswith("/") else None


def _under(path: Path, roots: list[Path]) -> bool:
    return any(path == root or root in path.parents for root in roots)


class Ingestor:
    def __init__(self, store: IndexStore):
        self.store = store

    def ingest(self, paths: Iterable[str | Path], *, rebuild: bool = False,
               progress: Callable[[int, int], None] | None = None) -> IngestReport:
        """Bring the index in line with files: add new, update changed (by content), and remove the
        documents that were loaded from files under the directories named whose files are gone."""
        settings = self.store.settings
        paths = [p if is_url(p) else Path(p) for p in paths]
        known = None
        if any(is_url(p) for p in paths):  # stored pages' validators make an unchanged page cost one 304
            try:
                stored = self.store.stored()
            except (IndexCorruptError, IndexMismatchError):
                stored = None
            known = stored.document if stored is not None else None
        loaded = load_paths(paths, limits=limits_for(settings), fetch_options=fetch_options_for(settings), known=known)
        roots = [p.resolve() for p in paths if isinstance(p, Path) and p.is_dir()]
        present = {file_origin(d) for d in loaded.documents}

        def gone(doc: Document) -> bool:
            origin = file_origin(doc)
            return origin is not None and _under(origin, roots) and origin not in present and not origin.exists()

        return self.ingest_documents(loaded.documents, skipped=loaded.skipped, rebuild=rebuild, progress=progress,
                                     remove_if=gone)

    def ingest_documents(self, documents: list[Document], *, skipped: list[SkippedFile] | None = None,
                         rebuild: bool = False, progress: Callable[[int, int], None] | None = None,
                         replace_all: bool = False,
                         remove_if: Callable[[Document], bool] | None = None) -> IngestReport:
        """Bulk add or replace documents by id and write a new snapshot; unchanged documents keep
        their vectors (no embedding). With `replace_all` the index holds exactly `documents`."""
        store = self.store
        report = IngestReport(skipped=list(skipped or []))
        config = store.builder.config
        with store.exclusive():
            stored_docs: list = []
            try:
                previous = store.stored()
                stored_docs = list(previous.documents) if previous is not None else []
            except (IndexCorruptError, IndexMismatchError) as exc:  # damaged, or an older format
                if not rebuild:
                    raise
                previous = None
                stored_docs = store.salvage_documents()
                report.rebuilt = f"the stored index could not be used ({exc}); rebuilt from its stored documents"
            if previous is not None and previous.config != config:
                report.rebuilt = "; ".join(config.differences(previous.config))
            merged: dict[str, Document] = {} if replace_all else {d.id: d for d in stored_docs}
            if remove_if is not None:
                for doc in stored_docs:
                    if remove_if(doc) and merged.pop(doc.id, None) is not None:
                        report.removed.append(doc.source)
            for doc in documents:
                old = previous.document(doc.id) if previous is not None else None
                if old is None:
                    report.added += 1
                elif same_document(old, doc) and not rebuild:
                    report.unchanged += 1
                else:
                    report.updated += 1
                merged[doc.id] = doc
            seq = max(previous.journal_seq if previous else 0, store.journal.last_seq())
            with batch_threads():
                index = store.builder(list(merged.values()), None if rebuild else previous, journal_seq=seq,
                                      progress=progress)
            store.replace(index)
        report.documents, report.chunks = len(index.documents), len(index.chunks)
        return report
