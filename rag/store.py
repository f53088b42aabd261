"""The index store: the one writer of a data directory.

It owns the served index (`current`, an immutable `SegmentedIndex`), the writer lock (a thread
lock within the process and `flock` on a lock file across processes), the write-ahead journal, the
manifest of segments and the refresh that picks up what another process wrote. Readers never take
a lock: they read `current` and keep the one they started with.

A write costs what it changes: its documents are embedded into a small in-memory segment (combined
with the one before it until a flush), the documents it replaces or deletes are marked deleted in
older segments, and the change is journaled before it is acknowledged. A flush writes the in-memory
segment and a new manifest and empties the journal; a background merger combines segments
(`rag.merge`) without holding the lock while it works, and swaps its result in atomically.
Writers queue for the lock with a bound of their own, so a burst of writes is refused (503)
before it can hold the request slots readers need.
"""
from __future__ import annotations

import fcntl
import logging
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator, Protocol, Sequence

from .config import Settings
from .documents import Document, same_document
from .errors import (CancelledError, DocumentNotFoundError, IndexCorruptError, IndexMismatchError, IndexNotFoundError,
                     NotReadyError, UnavailableError)
from .index import Index, IndexConfig
from .journal import Change, Journal
from .manifest import load_state, save_state, stored_documents
from .maintenance import Maintenance
from .merge import MergePolicy, merge_segments
from .segments import Segment, SegmentedIndex

log = logging.getLogger("rag.store")


class IndexBuilder(Protocol):
    """Builds a new segment from documents (embedding every one of them)."""

    config: IndexConfig

    def __call__(self, documents: Sequence[Document], *, journal_seq: int,
                 progress: Callable[[int, int], None] | None = None) -> Index: ...


@dataclass(frozen=True)
class DiskState:
    """What tells us another process wrote: the snapshot pointer and the journal's length."""

    pointer: str | None
    journal_bytes: int


class IndexStore:
    def __init__(self, settings: Settings, builder: IndexBuilder, merge_policy: MergePolicy | None = None):
        self.settings = settings
        self.builder = builder
        self.root = settings.index_dir
        self.journal = Journal(self.root / "journal.jsonl")
        self.merge_policy = merge_policy or MergePolicy(factor=settings.merge_factor)
        self.refresh_interval_s = 1.0
        self._index: SegmentedIndex | None = None
        self._opened: dict[str, Index] = {}  # segments opened, by name: a reload reuses them
        self._thread_lock = threading.RLock()
        self._holding = 0  # nesting depth of `exclusive` in the thread that holds it
        self._queue = threading.BoundedSemaphore(settings.max_queued_writes + 1)  # waiting writers + the one writing
        self._checked_at = float("-inf")  # never checked (monotonic time may start near 0 at boot)
        self._seen = DiskState(None, 0)
        self._last_seq = 0
        self._since_flush = 0
        self._memory_since: float | None = None  # when the in-memory segment got its first change
        self.maintenance = Maintenance(self)

    # -- reading -------------------------------------------------------------------------
    @property
    def ready(self) -> bool:
        return self._index is not None

    @property
    def current(self) -> SegmentedIndex:
        """The served index. Never blocks; raises NotReadyError (503) while loading."""
        if self._index is None:
            raise NotReadyError("the index is not loaded yet")
        return self._index

    def adopt(self, index: SegmentedIndex) -> None:
        """Serve an index another store of the same data loaded (evaluation variants share one)."""
        self._index, self._last_seq = index, index.journal_seq

    def refresh(self) -> None:
        """Pick up what another process (say `rag ingest`) wrote since we last looked: a cheap check,
        at most once every `refresh_interval_s`, and a reload only on change. Never waits for a
        writer: while one holds the lock, readers keep the index they have."""
        now = time.monotonic()
        if self._index is None or now - self._checked_at < self.refresh_interval_s:
            return
        self._checked_at = now
        if self._disk_state() != self._seen:
            with self.exclusive(wait=False) as got:
                if not got:
                    return  # a writer is at work; it leaves the store current when it is done

    # -- the writer lock -----------------------------------------------------------------
    def _disk_state(self) -> DiskState:
        try:
            name = (self.root / "CURRENT").read_text()
        except FileNotFoundError:
            name = None
        try:
            size = self.journal.path.stat().st_size
        except FileNotFoundError:
            size = 0
        return DiskState(name, size)

    @contextmanager
    def exclusive(self, *, wait: bool = True) -> Iterator[bool]:
        """Hold the writer lock (re-entrant in one thread) and start from what is on disk. Yields
        whether it is held: False only with `wait=False` when another writer holds it."""
        if not self._thread_lock.acquire(blocking=wait):
            yield False
            return
        try:
            if self._holding:
                self._holding += 1
                try:
                    yield True
                finally:
                    self._holding -= 1
                return
            self.settings.data_dir.mkdir(parents=True, exist_ok=True)
            with open(self.settings.data_dir / ".writer.lock", "a+") as lock:
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
                except BlockingIOError:
                    yield False
                    return
                self._holding = 1
                try:
                    if self._index is not None and self._disk_state() != self._seen:
                        self._index = self.stored(fresh=True)
                        self._last_seq = max(self._last_seq, self._index.journal_seq)
                    yield True
                    self._seen = self._disk_state()
                finally:
                    self._holding = 0
                    fcntl.flock(lock, fcntl.LOCK_UN)
        finally:
            self._thread_lock.release()

    @contextmanager
    def _write_slot(self) -> Iterator[None]:
        """A place in the writers' queue, or 503 at once when the queue is full."""
        if not self._queue.acquire(blocking=False):
            raise UnavailableError(f"too many writes are waiting (more than {self.settings.max_queued_writes}); "
                                   "retry shortly")
        try:
            with self.exclusive():
                yield
        finally:
            self._queue.release()

    # -- loading -------------------------------------------------------------------------
    def _read(self, expected: IndexConfig | None) -> SegmentedIndex:
        view = load_state(self.root, expected, policy=self.settings.vector_policy, loaded=self._opened.get)
        self._opened = {s.name: s.index for s in view.segments}
        return view

    def load(self, build_if_missing: Callable[[], None] | None = None) -> SegmentedIndex:
        """Load the stored index and replay the journal over it. With nothing stored, call
        `build_if_missing` (it writes through this store) or raise IndexNotFoundError."""
        with self.exclusive():
            try:
                view = self._read(self.builder.config)
            except IndexNotFoundError:
                if build_if_missing is None:
                    raise
                build_if_missing()
                self.maintenance.start()
                return self.current
            view = self._replay(view)
            self._index, self._last_seq = view, view.journal_seq
        self.maintenance.start()
        return view

    def stored(self, *, fresh: bool = False) -> SegmentedIndex | None:
        """The current index (loaded, journal replayed), or None when nothing is stored. (Under the lock.)"""
        if self._index is not None and not fresh:
            return self._index
        try:
            view = self._read(None)
        except IndexNotFoundError:
            return None
        return self._replay(view)

    def _replay(self, view: SegmentedIndex) -> SegmentedIndex:
        changes = self.journal.read(after=view.journal_seq).changes  # damage is logged and skipped
        if not changes:
            return view
        self._since_flush = len(changes)
        self._memory_since = time.monotonic()
        return self._apply(view, changes)

    def salvage_documents(self) -> list[Document]:
        """Documents of a damaged index: its segments' checked documents files plus the journal's
        records, or the journal's alone when the documents files are gone too."""
        try:
            docs, seq = stored_documents(self.root)
        except (IndexCorruptError, IndexNotFoundError, IndexMismatchError):
            docs, seq = [], 0
        return list(_replayed({d.id: d for d in docs}, self.journal.read(after=seq).changes).values())

    def _apply(self, view: SegmentedIndex, changes: Sequence[Change],
               cancelled: Callable[[], bool] | None = None) -> SegmentedIndex:
        """A new index with `changes` applied: the documents they replace or delete are marked
        deleted where they live, the ones they put are embedded into the in-memory segment.
        `cancelled` is asked between embedding batches: a write whose client left stops there."""
        def progress(done: int, total: int) -> None:
            if cancelled is not None and done < total and cancelled():
                raise CancelledError("the client went away; the write was not made")

        final: dict[str, Document | None] = {}
        for c in changes:
            final[c.document.id if c.op == "put" else c.document_id] = c.document if c.op == "put" else None
        segments = list(view.segments)
        dead: dict[int, list[int]] = {}
        for doc_id in final:
            found = view.find(doc_id)
            if found is not None:
                dead.setdefault(found[0], []).append(found[1])
        for s, rows in dead.items():
            segments[s] = segments[s].without(rows)
        new_docs = [d for d in final.values() if d is not None]
        if new_docs:
            built = Segment(self.builder(new_docs, journal_seq=changes[-1].seq, progress=progress))
            if segments and segments[-1].name is None:  # one in-memory segment: combined, not stacked
                built = Segment(merge_segments([segments[-1], built], view.config, self.settings.vector_policy))
                segments[-1] = built
            else:
                segments.append(built)
        segments = [s for s in segments if s.live_documents or s.name is not None]
        return view.replaced(segments, journal_seq=changes[-1].seq)

    # -- writing -------------------------------------------------------------------------
    def put(self, documents: Sequence[Document], *, cancelled: Callable[[], bool] | None = None) -> list[str]:
        """Add or replace documents; returns each one's outcome ("added", "updated", "unchanged").
        When this returns, the change is durable (journaled, fsynced) and visible to the next query.
        While `cancelled()` turns true before the journal write, nothing is written (CancelledError)."""
        with self._write_slot():
            index = self.current
            outcomes, changes = [], []
            seq = max(index.journal_seq, self._last_seq)
            pending: dict[str, Document] = {}
            for doc in documents:
                old = pending.get(doc.id) or index.document(doc.id)
                if old is not None and same_document(old, doc):
                    outcomes.append("unchanged")
                    continue
                outcomes.append("added" if old is None else "updated")
                seq += 1
                changes.append(Change(seq=seq, op="put", document=doc))
                pending[doc.id] = doc
            if changes:
                self._commit(index, changes, cancelled)
            return outcomes

    def delete(self, doc_id: str) -> None:
        with self._write_slot():
            index = self.current
            if index.document(doc_id) is None:
                raise DocumentNotFoundError(f"no document with id {doc_id!r}")
            self._commit(index, [Change(seq=max(index.journal_seq, self._last_seq) + 1, op="delete",
                                        document_id=doc_id)])

    def _commit(self, index: SegmentedIndex, changes: list[Change],
                cancelled: Callable[[], bool] | None = None) -> None:
        new = self._apply(index, changes, cancelled)  # embed first: a failure here leaves nothing half-written
        self.journal.append(changes)  # durable from here on
        self._last_seq = changes[-1].seq
        self._index = new  # visible to the next query
        self._since_flush += len(changes)
        if self._memory_since is None:
            self._memory_since = time.monotonic()
        if self._since_flush >= self.settings.snapshot_every:
            try:
                self._flush()
            except OSError as exc:  # the change is durable in the journal; the flush can wait
                log.error("flush failed (the journal keeps every change): %s", exc)
        self.maintenance.wake()

    def replace(self, index: SegmentedIndex) -> None:
        """Make a bulk-built index (ingest) the stored and served one. (Under `exclusive`.)"""
        self._index = index
        self._flush(always=True)
        self._last_seq = max(self._last_seq, index.journal_seq)

    def compact(self) -> None:
        """Flush: write the in-memory segment and a manifest holding every journaled change, then
        empty the journal."""
        with self.exclusive():
            if self._index is not None and (self._since_flush or self.journal.read(after=self._index.journal_seq - 1).changes):
                self._flush(always=True)

    def _flush(self, *, always: bool = False) -> None:
        """(Under `exclusive`.) The segments and manifest first, then the journal: a crash between
        the two only leaves journal records the manifest already holds, which replay skips by
        sequence number."""
        if not always and not self._since_flush:
            return
        self._index = save_state(self._index, self.root)
        self._opened = {s.name: s.index for s in self._index.segments}
        self.journal.clear()
        self._since_flush, self._memory_since = 0, None

    def install(self, view: SegmentedIndex) -> None:
        """Serve `view` and store it (flush included). (Under `exclusive`: maintenance commits this way.)"""
        self._index = view
        self._flush(always=True)

    @property
    def unflushed_since(self) -> float | None:
        """When the in-memory segment got its oldest unflushed change (time.monotonic), if any."""
        return self._memory_since

    def close(self) -> None:
        self.maintenance.close()


def _replayed(docs: dict[str, Document], changes: Sequence[Change]) -> dict[str, Document]:
    for c in changes:
        if c.op == "put":
            docs[c.document.id] = c.document
        else:
            docs.pop(c.document_id, None)
    return docs
