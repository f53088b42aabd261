"""The index store: the one writer of a data directory.

It owns the served snapshot (`current`), the writer lock (a thread lock within the process and
`flock` on a lock file across processes), the write-ahead journal, snapshots and the refresh that
picks up what another process wrote. Readers never take a lock: they read `current`, an immutable
`Index`, and keep the one they started with. Writers queue for the lock with a bound of their own,
so a burst of writes is refused (503) before it can hold the request slots readers need.
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
from .errors import (CancelledError, DocumentNotFoundError, IndexCorruptError, IndexNotFoundError, NotReadyError,
                     UnavailableError)
from .index import Index, IndexConfig
from .journal import Change, Journal
from .snapshot import load_index, read_stored_documents, save_index

log = logging.getLogger("rag.store")


class IndexBuilder(Protocol):
    """Builds a new index from documents, reusing `previous`'s vectors for unchanged ones."""

    config: IndexConfig

    def __call__(self, documents: Sequence[Document], previous: Index | None, *, journal_seq: int,
                 progress: Callable[[int, int], None] | None = None) -> Index: ...


@dataclass(frozen=True)
class DiskState:
    """What tells us another process wrote: the snapshot pointer and the journal's length."""

    pointer: str | None
    journal_bytes: int


class IndexStore:
    def __init__(self, settings: Settings, builder: IndexBuilder):
        self.settings = settings
        self.builder = builder
        self.journal = Journal(settings.index_dir / "journal.jsonl")
        self.refresh_interval_s = 1.0
        self._index: Index | None = None
        self._thread_lock = threading.RLock()
        self._holding = 0  # nesting depth of `exclusive` in the thread that holds it
        self._queue = threading.BoundedSemaphore(settings.max_queued_writes + 1)  # waiting writers + the one writing
        self._checked_at = 0.0
        self._seen = DiskState(None, 0)
        self._last_seq = 0
        self._since_snapshot = 0

    # -- reading -------------------------------------------------------------------------
    @property
    def ready(self) -> bool:
        return self._index is not None

    @property
    def current(self) -> Index:
        """The served snapshot. Never blocks; raises NotReadyError (503) while loading."""
        if self._index is None:
            raise NotReadyError("the index is not loaded yet")
        return self._index

    def adopt(self, index: Index) -> None:
        """Serve an index another store of the same data loaded (evaluation variants share one)."""
        self._index, self._last_seq = index, index.journal_seq

    def refresh(self) -> None:
        """Pick up what another process (say `rag ingest`) wrote since we last looked: a cheap check,
        at most once every `refresh_interval_s`, and a reload only on change. Never waits for a
        writer: while one holds the lock, readers keep the snapshot they have."""
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
        pointer, journal = self.settings.index_dir / "CURRENT", self.journal.path
        try:
            name = pointer.read_text()
        except FileNotFoundError:
            name = None
        try:
            size = journal.stat().st_size
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
    def load(self, build_if_missing: Callable[[], None] | None = None) -> Index:
        """Load the stored snapshot and replay the journal over it. With nothing stored, call
        `build_if_missing` (it writes through this store) or raise IndexNotFoundError."""
        with self.exclusive():
            try:
                index = load_index(self.settings.index_dir, self.builder.config,
                                   policy=self.settings.vector_policy)
            except IndexNotFoundError:
                if build_if_missing is None:
                    raise
                build_if_missing()
                return self.current
            index = self._replay(index)
            self._index, self._last_seq = index, index.journal_seq
        return index

    def stored(self, *, fresh: bool = False) -> Index | None:
        """The current index (loaded, journal replayed), or None when nothing is stored. (Under the lock.)"""
        if self._index is not None and not fresh:
            return self._index
        try:
            index = load_index(self.settings.index_dir, policy=self.settings.vector_policy)
        except IndexNotFoundError:
            return None
        return self._replay(index)

    def _replay(self, index: Index) -> Index:
        changes = self.journal.read(after=index.journal_seq).changes  # damage is logged and skipped
        return self._apply(index, changes) if changes else index

    def salvage_documents(self) -> list[Document]:
        """Documents of a damaged index: its checked documents file plus the journal's records, or
        the journal's alone when the documents file is gone too."""
        try:
            docs, seq = read_stored_documents(self.settings.index_dir)
        except (IndexCorruptError, IndexNotFoundError):
            docs, seq = [], 0
        return list(_replayed({d.id: d for d in docs}, self.journal.read(after=seq).changes).values())

    def _apply(self, index: Index, changes: Sequence[Change],
               cancelled: Callable[[], bool] | None = None) -> Index:
        """A new snapshot with `changes` applied; only changed documents are chunked and embedded.
        `cancelled` is asked between embedding batches: a write whose client left stops there."""
        def progress(done: int, total: int) -> None:
            if cancelled is not None and done < total and cancelled():
                raise CancelledError("the client went away; the write was not made")

        docs = _replayed({d.id: d for d in index.documents}, changes)
        return self.builder(list(docs.values()), index, journal_seq=changes[-1].seq, progress=progress)

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

    def _commit(self, index: Index, changes: list[Change], cancelled: Callable[[], bool] | None = None) -> None:
        new = self._apply(index, changes, cancelled)  # embed first: a failure here leaves nothing half-written
        self.journal.append(changes)  # durable from here on
        self._last_seq = changes[-1].seq
        self._index = new  # visible to the next query
        self._since_snapshot += len(changes)
        if self._since_snapshot >= self.settings.snapshot_every:
            try:
                self._snapshot()
            except OSError as exc:  # the change is durable in the journal; compaction can wait
                log.error("snapshot failed (the journal keeps every change): %s", exc)

    def replace(self, index: Index) -> None:
        """Make a bulk-built index (ingest) the stored and served one. (Under `exclusive`.)"""
        save_index(index, self.settings.index_dir)
        self.journal.clear()
        self._index, self._last_seq, self._since_snapshot = index, index.journal_seq, 0

    def compact(self) -> None:
        """Write a snapshot holding every journaled change, then empty the journal."""
        with self.exclusive():
            if self._index is not None and self.journal.read(after=self._index.journal_seq - 1).changes:
                self._snapshot()

    def _snapshot(self) -> None:
        """(Under `exclusive`.) The snapshot first, then the journal: a crash between the two only
        leaves journal records the snapshot already holds, which replay skips by sequence number."""
        save_index(self._index, self.settings.index_dir)
        self.journal.clear()
        self._since_snapshot = 0


def _replayed(docs: dict[str, Document], changes: Sequence[Change]) -> dict[str, Document]:
    for c in changes:
        if c.op == "put":
            docs[c.document.id] = c.document
        else:
            docs.pop(c.document_id, None)
    return docs
