"""`rag bench-scale`'s merge phase: `/search` over HTTP while the whole served index is merged.

The server builds its background merges in a child process at nice 10
(`rag.merge_process`), so what a query meets during a merge is that process beside the server. This
phase runs the same child on every flushed segment of the served index (the largest merge the
policy could ask for) and has one client query `/search` before it (`before_n` queries: the
baseline, same run) and during it, every question new (the list is long enough at scale; a tiny
run cycles through it). The merged segment is staged under the index and removed when the
phase ends, never published: the served index is unchanged. A merge still running after
`max_s` is stopped (the phase measures queries beside a merge, not the merge's length).
"""
from __future__ import annotations

import itertools
import shutil
import threading
import time
from pathlib import Path
from typing import Callable

from .measure import summary_ms

ATTEMPTS = 3


def _wait_until_not_merging(base_url: str, timeout_s: float = 600.0) -> None:
    import httpx

    deadline, quiet = time.monotonic() + timeout_s, 0
    with httpx.Client(base_url=base_url, timeout=30) as c:
        while quiet < 3 and time.monotonic() < deadline:
            quiet = 0 if c.get("/readyz").json().get("merging") else quiet + 1
            time.sleep(0.2)


def merge_phase(base_url: str, settings, questions: list[str], say: Callable[[str], None], *,
                before_n: int = 200, max_s: float = 90.0) -> dict:
    import httpx

    from rag.manifest import load_state
    from rag.merge_process import ChildMerges, MergeCancelled, MergeJob

    root: Path = settings.index_dir
    queries: list[tuple[float, float]] = []  # (start, seconds)
    stop, baseline = threading.Event(), threading.Event()

    def query() -> None:
        with httpx.Client(base_url=base_url, timeout=60) as c:
            for q in itertools.cycle(questions):
                if stop.is_set():
                    return
                t0 = time.perf_counter()
                if c.post("/search", json={"query": q, "top_k": 5}).status_code == 200:
                    queries.append((t0, time.perf_counter() - t0))
                if len(queries) >= before_n:
                    baseline.set()

    _wait_until_not_merging(base_url)  # the server's own merge (after the write phase's deletes) first
    client = threading.Thread(target=query, daemon=True)
    client.start()
    baseline.wait(600)
    children, outcome = ChildMerges(), {}
    timer = threading.Timer(max_s, children.cancel)
    timer.start()
    try:
        for attempt in range(ATTEMPTS):
            view = load_state(root, None, policy=settings.vector_policy)
            flushed = [s for s in view.segments if s.name]
            merge_start = time.perf_counter()
            try:
                outcome["staged"] = children.build(MergeJob.of(root, flushed, view.config, settings.vector_policy))
                outcome["finished"] = True
                break
            except RuntimeError as exc:  # the server replaced a segment (a flush's merge) before the child read it
                if attempt == ATTEMPTS - 1:
                    raise
                say(f"the served index changed under the merge; again ({exc})")
    except MergeCancelled:
        outcome["finished"] = False
    finally:
        timer.cancel()
        merge_end = time.perf_counter()
        stop.set()
        client.join(60)
    staged = outcome.get("staged")
    if staged:
        shutil.rmtree(root / staged, ignore_errors=True)
    before = [s for t0, s in queries if t0 + s <= merge_start]
    during = [s for t0, s in queries if t0 >= merge_start and t0 + s <= merge_end]
    out = {"segments_merged": len(flushed), "chunks_merged": sum(s.live_chunks for s in flushed),
           "merge_seconds": round(merge_end - merge_start, 1), "merge_finished": outcome["finished"],
           "queries_before_ms": summary_ms(before), "queries_during_ms": summary_ms(during) if during else None}
    if before and during:
        out["during_over_before_p50"] = round(out["queries_during_ms"]["p50"] / out["queries_before_ms"]["p50"], 2)
    say(f"merge of {out['chunks_merged']} chunks ({'finished' if outcome['finished'] else 'stopped'} after "
        f"{out['merge_seconds']} s): /search p50 {out['queries_before_ms']['p50']} ms before, "
        f"{(out['queries_during_ms'] or {}).get('p50')} ms during")
    return out
