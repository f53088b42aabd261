"""`rag bench-scale`'s write phase: single-document writes and deletes over HTTP while queries run.

Each write is a one-paragraph document (~150 words of pool sentences) sent with `POST /documents`;
it counts once acknowledged. The floor is the same documents' chunks and
sentences embedded in this process by the same model, in the same run: a write should cost its own
embedding and little more. Each acknowledged write must then be found by a search for its own
text. The first half of the writes runs alone (the latency the embedding floor is compared with: on
2 cores a concurrent query takes a core the write's embedding would use); then one client queries
`/search` all along (every question new) while the second half and the deletes run, and queries
are split by whether a merge was running (the server's `/readyz` says, polled every 50 ms). The
phase starts once the server's background pass over the segments' checksums is done (`/readyz`
`checksums_verified`; the wait is reported): writes are measured in the steady state.
"""
from __future__ import annotations

import random
import threading
import time
from typing import Callable

from .measure import summary_ms

WRITES = 60
DELETES = 30


def one_paragraph_documents(pool, count: int, seed: int) -> list:
    """Documents of 6-8 consecutive pool sentences (about 150 words) under a pool title."""
    from rag.documents import Document

    rng = random.Random(seed)
    docs = []
    while len(docs) < count:
        title, ids = pool.paragraphs[rng.randrange(len(pool.paragraphs))]
        if len(ids) < 6:
            continue
        n = min(len(ids), rng.randint(6, 8))
        first = rng.randrange(len(ids) - n + 1)
        text = " ".join(pool.sentences[i] for i in ids[first:first + n])
        doc_id = f"bench-write-{seed}-{len(docs):04d}"
        docs.append(Document(id=doc_id, source=f"bench/{doc_id}.txt", title=title, text=text))
    return docs


def embedding_floor_ms(real, docs, config) -> list[float]:
    """Per document: embedding its chunks, then its sentences, as a write does (same model, in process)."""
    from rag.build import texts_to_embed

    out = []
    for doc in docs:
        chunks, sentences = texts_to_embed([doc], config)
        t0 = time.perf_counter()
        real.encode(chunks)
        real.encode(sentences)
        out.append(time.perf_counter() - t0)
    return out


def write_phase(base_url: str, docs: list, questions: list[str], say: Callable[[str], None]) -> dict:
    import httpx

    stop = threading.Event()
    merging_spans: list[tuple[float, float]] = []
    queries: list[tuple[float, float]] = []  # (start, seconds)

    def watch_merges() -> None:
        started = None
        with httpx.Client(base_url=base_url, timeout=30) as c:
            while not stop.is_set():
                now = time.perf_counter()
                merging = bool(c.get("/readyz").json().get("merging"))
                if merging and started is None:
                    started = now
                elif not merging and started is not None:
                    merging_spans.append((started, now))
                    started = None
                time.sleep(0.05)
            if started is not None:
                merging_spans.append((started, time.perf_counter()))

    def query() -> None:
        pending = iter(questions)
        with httpx.Client(base_url=base_url, timeout=60) as c:
            for q in pending:
                if stop.is_set():
                    return
                t0 = time.perf_counter()
                r = c.post("/search", json={"query": q, "top_k": 5})
                if r.status_code == 200:
                    queries.append((t0, time.perf_counter() - t0))

    threads = [threading.Thread(target=watch_merges, daemon=True), threading.Thread(target=query, daemon=True)]
    writes, loaded_writes, deletes, invisible, errors = [], [], [], 0, 0
    with httpx.Client(base_url=base_url, timeout=120) as c:
        # A start checks segment sizes only; full checksums follow in the background (seconds of
        # hashing at a million chunks). Writes are measured in the steady state, after them.
        t0, deadline = time.perf_counter(), time.monotonic() + 600
        while not c.get("/readyz").json().get("checksums_verified") and time.monotonic() < deadline:
            time.sleep(0.1)
        verify_wait_s = time.perf_counter() - t0
        for i, doc in enumerate(docs):
            if i == len(docs) // 2:  # the second half while a client queries
                for t in threads:
                    t.start()
            t0 = time.perf_counter()
            r = c.post("/documents", json={"id": doc.id, "title": doc.title, "text": doc.text, "source": doc.source})
            if r.status_code != 201:
                errors += 1
                continue
            (writes if i < len(docs) // 2 else loaded_writes).append(time.perf_counter() - t0)
            # Searchable at once: its own text finds it (pool sentences recur in other documents, so
            # the search is narrowed to its source rather than expected at the top of the corpus).
            hits = c.post("/search", json={"query": doc.text[:200], "top_k": 1,
                                           "filters": {"source": doc.source}}).json()["passages"]
            invisible += [h["document_id"] for h in hits] != [doc.id]
        for doc in docs[:DELETES]:
            t0 = time.perf_counter()
            r = c.delete(f"/documents/{doc.id}")
            if r.status_code != 204:
                errors += 1
                continue
            deletes.append(time.perf_counter() - t0)
        merges = _metric(c.get("/metrics").text, "rag_index_merges_total")
        for doc in docs[DELETES:]:  # untimed: the index is left as it was (a --reuse run writes them anew)
            c.delete(f"/documents/{doc.id}")
    stop.set()
    for t in threads:
        if t.is_alive():
            t.join(60)
    during = [s for t0, s in queries if any(a <= t0 + s and t0 <= b for a, b in merging_spans)]
    out = {"writes": len(writes) + len(loaded_writes), "write_ms": summary_ms(writes),
           "write_ms_while_querying": summary_ms(loaded_writes), "delete_ms": summary_ms(deletes),
           "not_visible_after_ack": invisible, "errors": errors, "merges": merges,
           "waited_for_checksums_s": round(verify_wait_s, 1),
           "merge_seconds": round(sum(b - a for a, b in merging_spans), 1),
           "queries_during_writes_ms": summary_ms([s for _, s in queries]),
           "queries_during_merges": len(during), "queries_during_merges_ms": summary_ms(during) if during else None}
    say(f"writes p50 {out['write_ms']['p50']} ms, deletes p50 {out['delete_ms']['p50']} ms, {merges} merges, "
        f"queries meanwhile p50 {out['queries_during_writes_ms']['p50']} ms")
    return out


def _metric(text: str, name: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return None
