"""Building a merge's segment: in this process, or in a child process at a low CPU priority.

A merge built by a thread of the serving process competes with queries twice: for a core, and for
the GIL (each time a query lets go of it, in the model, FAISS or a file read, the merge thread may
keep it for a whole switch interval, 5 ms). Built in a child at nice 10, a merge never takes the GIL
and, when queries want every core, about a tenth of one (the scheduler's weights for nice 10 and 0
are 110 and 1024), which still lets merges finish on a busy server (at nice 19 they could starve).
The child reads the input segments from disk (they are immutable) and writes a staged segment; only
the parent publishes it, so a child that fails or is killed leaves nothing but a staged directory,
which the next start removes.
"""
from __future__ import annotations

import json
import logging
import os
import pickle
import shutil
import subprocess
import sys
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from .index import IndexConfig
from .merge import merge_segments
from .segments import Segment
from .snapshot import load_segment, write_segment
from .vectors import VectorIndexPolicy

log = logging.getLogger("rag.maintenance")

STDERR_TAIL = 2000  # characters of a failed child's output kept in the error
NICE = 10


@dataclass(frozen=True)
class MergeJob:
    """What a merge reads: flushed segments by name, with the document rows deleted in each."""

    root: Path
    names: tuple[str, ...]
    deleted: tuple[frozenset[int], ...]
    config: IndexConfig
    policy: VectorIndexPolicy

    @classmethod
    def of(cls, root: Path, inputs: Sequence[Segment], config: IndexConfig, policy: VectorIndexPolicy) -> "MergeJob":
        return cls(root, tuple(s.name for s in inputs), tuple(s.deleted for s in inputs), config, policy)


class MergeCancelled(Exception):
    """The child building a merge was stopped (the store is closing)."""


def build_staged(job: MergeJob, inputs: Sequence[Segment] | None = None) -> str | None:
    """Merge the job's segments into a staged segment under its root; its directory name, or None
    when none of their documents is live. `inputs` are the segments already open in this process."""
    if inputs is None:
        inputs = [Segment(load_segment(job.root / name, job.config, policy=job.policy), deleted, name)
                  for name, deleted in zip(job.names, job.deleted)]
    work = job.root / f".tmp-merge-{uuid.uuid4().hex[:8]}"
    work.mkdir(parents=True)
    try:
        merged = merge_segments(inputs, job.config, job.policy, sentence_file=work / "sentence_vectors.npy")
        return write_segment(merged, job.root, staged=True) if len(merged.documents) else None
    finally:
        shutil.rmtree(work, ignore_errors=True)


class ChildMerges:
    """Runs merges in `python -m rag.merge_process` at nice 10, one at a time; `cancel()` kills the
    running one."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None
        self._cancelled = False

    def build(self, job: MergeJob) -> str | None:
        """The staged segment's name, as `build_staged` returns it. Raises MergeCancelled after
        `cancel()`, and RuntimeError (or OSError) when the child could not do it."""
        package_parent = str(Path(__file__).resolve().parent.parent)  # so the child imports this very `rag`
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (package_parent, os.environ.get("PYTHONPATH"))
                                                          if p))
        with self._lock:
            if self._cancelled:
                raise MergeCancelled()
            self._proc = proc = subprocess.Popen(
                [sys.executable, "-m", "rag.merge_process", str(os.getpid())], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, close_fds=True)
        try:
            out, err = proc.communicate(pickle.dumps(job))
        finally:
            with self._lock:
                self._proc = None
        if self._cancelled:
            raise MergeCancelled()
        if proc.returncode != 0:
            raise RuntimeError(f"the merge process exited with status {proc.returncode}: "
                               f"{err.decode('utf-8', 'replace')[-STDERR_TAIL:].strip()}")
        return json.loads(out)["staged"]

    def cancel(self) -> None:
        with self._lock:
            self._cancelled = True
            if self._proc is not None and self._proc.poll() is None:
                self._proc.kill()


def lower_priority(*, every_thread: bool = False) -> None:
    """The calling thread (and the threads it starts later) at nice 10 at least; with `every_thread`,
    the process' threads that exist already too (those a library started at import). Linux keeps a
    nice value per thread, so a background thread of the server can wait for the requests' threads
    alone."""
    me = threading.get_native_id()
    tids = [int(t) for t in os.listdir("/proc/self/task")] if every_thread and os.path.isdir("/proc/self/task") else [me]
    for tid in tids:
        try:
            os.setpriority(os.PRIO_PROCESS, tid, max(os.getpriority(os.PRIO_PROCESS, tid), NICE))
        except (OSError, AttributeError):  # not Linux (or not allowed), or the thread has ended
            pass


def _die_with(parent: int) -> None:
    """Die with the parent (Linux): an orphaned merge would only write a staged directory nobody publishes."""
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:  # the parent died before the line above took effect
        sys.exit(3)


def main() -> None:
    _die_with(int(sys.argv[1]))
    lower_priority(every_thread=True)  # numpy's BLAS threads started at import
    job = pickle.load(sys.stdin.buffer)  # from the parent's pipe: the parent is this process' only writer
    result = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # anything a library prints goes to stderr; stdout carries only the result
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    result.write(json.dumps({"staged": build_staged(job)}))
    result.flush()


if __name__ == "__main__":
    main()
