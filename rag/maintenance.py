"""Index maintenance in the background: merges, flushes by age, full checksums and repair.

One daemon thread per store. A merge is built without the writer lock (reads and writes go on) into
a staged directory (the thread's merges by a low-priority child process, see merge_process), and
committed under the lock only if its inputs are still live; documents deleted while it ran are
deleted in its result too. A crash at any point leaves the previous manifest, and so the inputs, in force.
"""
from __future__ import annotations

import logging
import shutil
import threading
import time
from typing import TYPE_CHECKING

from .documents import Document
from .errors import IndexCorruptError, IndexMismatchError
from .merge_process import ChildMerges, MergeCancelled, MergeJob, build_staged, lower_priority
from .segments import Segment, SegmentedIndex
from .snapshot import load_segment, publish_segment, segment_documents, verify_segment

if TYPE_CHECKING:
    from .store import IndexStore

log = logging.getLogger("rag.maintenance")


class Maintenance:
    def __init__(self, store: "IndexStore"):
        self.store = store
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._children = ChildMerges()
        self.merges = 0  # merges committed (metrics, tests)
        self.merging = False  # a merge is being built now
        self.checksums_verified = False  # the background pass over every segment's checksums has finished

    def start(self) -> None:
        if self.store.settings.background_merge and self._thread is None and not self._stopping.is_set():
            self._thread = threading.Thread(target=self._run, name="rag-index-maintenance", daemon=True)
            self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def close(self) -> None:
        """Stop the thread. A merge still being built is not waited for long: the thread is a daemon,
        and a merge cut short by the process's exit leaves only a staged directory (removed later)."""
        self._stopping.set()
        self._wake.set()
        self._children.cancel()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        self._thread = None

    def _run(self) -> None:
        verified = False
        store = self.store
        while not self._stopping.is_set():
            self._wake.wait(timeout=min(5.0, store.settings.flush_seconds))
            self._wake.clear()
            if self._stopping.is_set():
                return
            try:
                if not verified:  # full checksums: seconds of hashing at a million chunks, beside requests
                    threading.Thread(target=self._verify_quietly, name="rag-index-verify", daemon=True).start()
                    verified = True
                since = store.unflushed_since
                if since is not None and time.monotonic() - since >= store.settings.flush_seconds:
                    store.compact()
                while not self._stopping.is_set() and self.merge_step(in_child=store.settings.merge_process):
                    pass
            except MergeCancelled:
                return
            except Exception:  # noqa: BLE001 - maintenance must not die; the index stays as it is
                log.exception("index maintenance failed; it will be retried")

    # -- merges ------------------------------------------------------------------------------
    def merge_pending(self) -> int:
        """Every merge the policy asks for, now (after a bulk ingest); returns how many."""
        done = 0
        while self.merge_step():
            done += 1
        return done

    def merge_step(self, *, in_child: bool = False) -> bool:
        """One merge the policy asks for; returns whether one was committed."""
        store = self.store
        view = store.current if store.ready else None
        picked = store.merge_policy.pick(view.segments) if view is not None else None
        if not picked:
            return False
        return self.merge([view.segments[i].name for i in picked], in_child=in_child)

    def merge(self, names: list[str], *, in_child: bool = False) -> bool:
        """Merge the named segments into one; returns whether it was committed (False when another
        writer replaced one of them meanwhile). `in_child`: built by a low-priority child process."""
        store = self.store
        view = store.current
        inputs = [s for s in view.segments if s.name in set(names)]
        if len(inputs) != len(names):
            return False
        job = MergeJob.of(store.root, inputs, view.config, store.settings.vector_policy)
        self.merging = True
        try:
            staged = self._build(job, inputs) if in_child else build_staged(job, inputs)
        finally:
            self.merging = False
        with store.exclusive():
            current = store.current
            by_name = {s.name: s for s in current.segments}
            if any(s.name not in by_name for s in inputs):  # another writer merged or replaced them
                if staged:
                    shutil.rmtree(store.root / staged, ignore_errors=True)
                return False
            # Documents deleted or replaced while the merge ran are deleted in its result too.
            late = [s.index.documents[r].id for s in inputs for r in by_name[s.name].deleted - s.deleted]
            replacement = []
            if staged:
                name = publish_segment(store.root, staged)
                index = load_segment(store.root / name, current.config, policy=store.settings.vector_policy)
                replacement = [Segment(index, frozenset(index.doc_row[i] for i in late), name)]
            names = {s.name for s in inputs}
            segments: list[Segment] = []
            for s in current.segments:
                if s.name not in names:
                    segments.append(s)
                elif replacement:
                    segments.extend(replacement)
                    replacement = []
            store.install(current.replaced(segments))
            self.merges += 1
        log.info("merged %d segments (%d live chunks) into one", len(inputs), sum(s.live_chunks for s in inputs))
        return True

    def _build(self, job: MergeJob, inputs: list[Segment]) -> str | None:
        try:
            return self._children.build(job)
        except (OSError, RuntimeError) as exc:  # no process could be started, or it failed: merge here
            log.warning("merging in the serving process: %s", exc)
            return build_staged(job, inputs)

    # -- damage --------------------------------------------------------------------------------
    def _verify_quietly(self) -> None:
        """`verify` from a thread of its own at nice 10 (Linux gives each thread its own nice value):
        the hashing waits for the requests' threads instead of taking a core from them."""
        lower_priority()
        try:
            self.verify()
            self.checksums_verified = True
        except Exception:  # noqa: BLE001 - the index stays as it is; `rag check` verifies too
            log.exception("verifying the index's checksums failed")

    def verify(self) -> list[tuple[str, str]]:
        """Compare every segment's files with their checksums (a start checks sizes only). Damaged
        segments are left out of the served index and reported (`damaged`); returns what was found."""
        store = self.store
        view = store.current if store.ready else None
        if view is None:
            return []
        found = [(s.name, "; ".join(p)) for s in view.segments if s.name and (p := verify_segment(store.root / s.name))]
        if found:
            with store.exclusive():
                current = store.current
                bad = dict(found)
                damaged = current.damaged + tuple((s.name, bad[s.name], tuple(sorted(s.deleted)))
                                                  for s in current.segments if s.name in bad)
                for name, reason in found:
                    log.error("segment %s left out: %s", name, reason)
                store.install(SegmentedIndex(current.config, tuple(s for s in current.segments if s.name not in bad),
                                             current.journal_seq, current.generation, damaged))
        return found

    def damaged_documents(self, view: SegmentedIndex) -> tuple[list[Document], list[str]]:
        """The live documents of `view`'s damaged segments that their documents files still hold
        (and no other segment does), and the names of the segments whose documents file is damaged too."""
        docs, lost = [], []
        for name, _, deleted in view.damaged:
            try:
                stored = segment_documents(self.store.root / name)
            except (IndexCorruptError, IndexMismatchError):
                lost.append(name)
                continue
            docs.extend(d for r, d in enumerate(stored) if r not in set(deleted) and view.document(d.id) is None)
        return docs, lost

    def repair(self) -> list[str]:
        """Rebuild the damaged segments from their own documents files (re-embedding their live
        documents); returns the names repaired. Raises IndexCorruptError when a documents file is
        damaged too: only the original files (`rag ingest --rebuild PATH...`) restore those."""
        store = self.store
        with store.exclusive():
            view = store.current
            if not view.damaged:
                return []
            docs, lost = self.damaged_documents(view)
            if lost:
                raise IndexCorruptError(f"segments {', '.join(lost)} lost their documents file too; rebuild "
                                        "from the original files with `rag ingest --rebuild PATH...`")
            segments = list(view.segments)
            if docs:
                segments.append(Segment(store.builder(docs, journal_seq=view.journal_seq)))
            store.install(SegmentedIndex(view.config, tuple(segments), view.journal_seq, view.generation))
            return [name for name, _, _ in view.damaged]
