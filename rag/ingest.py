"""Bulk ingest: bring the index in line with files (or a list of documents), writing new segments."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

from .documents import (Document, SkippedFile, fetch_options_for, is_url, limits_for, load_paths,
                        same_document)
from .embedding import batch_threads
from .errors import IndexCorruptError, IndexMismatchError
from .memory import release_free_memory
from .segments import Segment, SegmentedIndex
from .snapshot import load_segment, write_segment
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


# Characters of documents per segment written by a bulk ingest: ~70k chunks, whose vectors and
# postings take a few hundred MB while the segment is built.
SEGMENT_CHARS = 50_000_000


class Ingestor:
    def __init__(self, store: IndexStore, *, merge: bool = True):
        self.store = store
        self.merge = merge  # run the merges the policy asks for after an ingest

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

    def ingest_documents(self, documents: Iterable[Document], *, skipped: list[SkippedFile] | None = None,
                         rebuild: bool = False, progress: Callable[[int, int], None] | None = None,
                         replace_all: bool = False, remove_if: Callable[[Document], bool] | None = None,
                         expected_chars: int | None = None) -> IngestReport:
        """Bulk add or replace documents by id. Unchanged documents stay where they are (no
        embedding); new and changed ones are embedded into new segments written one at a time;
        replaced and removed ones are marked deleted. With `replace_all` the index holds exactly
        `documents`; `rebuild` re-embeds everything. `documents` may be any iterable: it is read
        once, and only the segment being built is held (ids are kept for the rest), so a generator
        keeps a bulk load's memory bounded by a segment, not the corpus. `expected_chars` (the
        characters to come) makes `progress`'s total an estimate from the start when `documents`
        has no length."""
        store = self.store
        report = IngestReport(skipped=list(skipped or []))
        config = store.builder.config
        salvaged: list[Document] = []
        if isinstance(documents, Sequence) and expected_chars is None:
            expected_chars = sum(len(d.text) for d in documents)
        with store.exclusive():
            try:
                previous = store.stored()
            except (IndexCorruptError, IndexMismatchError) as exc:  # damaged, or an older format
                if not rebuild:
                    raise
                previous = None
                salvaged = store.salvage_documents()
                report.rebuilt = f"the stored index could not be used ({exc}); rebuilt from its stored documents"
            if previous is not None and previous.config != config:
                report.rebuilt = "; ".join(config.differences(previous.config))
                rebuild = True
            stored_docs = previous.live_documents() if previous is not None else salvaged if rebuild else []
            if previous is not None and previous.damaged and rebuild:
                recovered, lost = store.maintenance.damaged_documents(previous)
                stored_docs = [*stored_docs, *recovered]
                report.rebuilt = (f"{len(previous.damaged)} damaged segment(s) could not be used; rebuilt from the "
                                  "stored documents" + (f" (the documents of {', '.join(lost)} are lost with their "
                                                        "file)" if lost else ""))
            wanted: set[str] = set() if replace_all else {d.id for d in stored_docs}
            if remove_if is not None:
                for doc in stored_docs:
                    if remove_if(doc) and doc.id in wanted:
                        wanted.discard(doc.id)
                        report.removed.append(doc.source)
            build_all = rebuild or previous is None
            # Rebuilding stored documents keeps their order, an incoming document taking the place of
            # the one it replaces: that needs every document at once (they are all in memory already).
            restored = {d.id: d for d in stored_docs if d.id in wanted} if build_all and wanted else None
            seq = max(previous.journal_seq if previous else 0, store.journal.last_seq())
            changed: set[str] = set()
            with batch_threads():
                writer = _SegmentWriter(store, seq, progress, expected_chars)
                for doc in documents:
                    old = previous.document(doc.id) if previous is not None else None
                    if old is None:
                        report.added += 1
                    elif same_document(old, doc) and not rebuild:
                        report.unchanged += 1
                        wanted.add(doc.id)
                        writer.expected_chars -= len(doc.text)  # not to be built: not in the progress total
                        continue
                    else:
                        report.updated += 1
                    wanted.add(doc.id)
                    changed.add(doc.id)
                    if restored is not None:
                        restored[doc.id] = doc
                    else:
                        writer.add(doc)
                if restored is not None:
                    writer.expected_chars = sum(len(d.text) for d in restored.values())
                    for doc in restored.values():
                        writer.add(doc)
                new = writer.finish()
            if build_all:
                kept = []
            else:
                kept = self._without(previous, [d.id for d in stored_docs if d.id not in wanted or d.id in changed])
            view = SegmentedIndex(config, (), seq) if build_all else previous
            index = view.replaced([*kept, *new], journal_seq=seq)
            store.replace(index)
        if self.merge:
            # What one ingest added is merged into one segment (a bulk load's segments are all alike:
            # left apart, each one's searches add up), then whatever the tiered policy asks for.
            named = [s.name for s in new]
            merged = (len(named) > 1 and sum(s.live_chunks for s in new) <= store.merge_policy.max_chunks
                      and store.maintenance.merge(named))
            if store.maintenance.merge_pending() or merged:
                release_free_memory()  # what the merges let go of: not for what comes next (a calibration, a server)
            index = store.current
        report.documents, report.chunks = index.document_count, index.chunk_count
        return report

    @staticmethod
    def _without(view: SegmentedIndex, ids: list[str]) -> list[Segment]:
        """`view`'s segments with the documents `ids` marked deleted."""
        dead: dict[int, list[int]] = {}
        for doc_id in ids:
            found = view.find(doc_id)
            if found is not None:
                dead.setdefault(found[0], []).append(found[1])
        return [s.without(dead[i]) if i in dead else s for i, s in enumerate(view.segments)]


class _SegmentWriter:
    """Documents in, segments of about `SEGMENT_CHARS` characters out: each is built, written to
    disk and let go of before the next one is gathered. A document given twice keeps its last
    text (in place within the batch; a copy already written is marked deleted)."""

    def __init__(self, store: IndexStore, seq: int, progress: Callable[[int, int], None] | None,
                 expected_chars: int | None):
        self.store, self.seq, self.progress = store, seq, progress
        self.expected_chars = expected_chars or 0
        self.segments: list[Segment] = []
        self.batch: list[Document] = []
        self.at: dict[str, int] = {}  # id -> position in the batch
        self.written: dict[str, int] = {}  # id -> segment it was written to
        self.dead: dict[int, list[str]] = {}  # segment -> ids written again later
        self.chars = self.seen = self.done_texts = 0

    def add(self, doc: Document) -> None:
        at = self.at.get(doc.id)
        if at is not None:
            self.batch[at] = doc
        else:
            self.at[doc.id] = len(self.batch)
            self.batch.append(doc)
        self.chars += len(doc.text)
        self.seen += len(doc.text)
        if self.chars >= SEGMENT_CHARS:
            self._flush()

    def finish(self) -> list[Segment]:
        if self.batch:
            self._flush()
        for k, ids in self.dead.items():
            seg = self.segments[k]
            self.segments[k] = seg.without([seg.index.doc_row[i] for i in ids])
        return self.segments

    def _flush(self) -> None:
        store, base, seen = self.store, self.done_texts, self.seen
        total_chars = max(self.expected_chars, seen)

        def step(done: int, total: int) -> None:
            # Texts so far, of an estimate from the characters still to come at this batch's rate.
            rate = (base + total) / max(seen, 1)
            if self.progress:
                self.progress(base + done, base + total + int(rate * (total_chars - seen)))
        index = store.builder(self.batch, journal_seq=self.seq, progress=step)
        self.done_texts += len(index.chunk_doc_row) + len(index.sentences)
        name, config = write_segment(index, store.root), index.config
        del index
        release_free_memory()  # the built segment's objects: the next one (or the merge) reuses none
        k = len(self.segments)
        for doc_id in self.at:
            earlier = self.written.get(doc_id)
            if earlier is not None:
                self.dead.setdefault(earlier, []).append(doc_id)
            self.written[doc_id] = k
        self.segments.append(Segment(load_segment(store.root / name, config,
                                                  policy=store.settings.vector_policy), name=name))
        self.batch, self.at, self.chars = [], {}, 0
