"""Run a dataset through the served pipeline, in-process or over HTTP, and score every question."""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Protocol, Sequence

from . import metrics as m
from .datasets import EvalItem

RETRIEVAL_DEPTH = 20
HIT_KS = (1, 5, 20)
WARM_UP_QUESTION = "What is this collection of documents about?"

# What went wrong with a question, most basic first (one kind per question).
FAILURES = {
    "false abstention": "an answerable question got \"the documents don't say\"",
    "answered unanswerable": "a question the documents do not answer got an answer",
    "invalid citation": "a [n] names no citation, or a quote is not the document's text at its offsets",
    "wrong document": "no cited document is a gold document",
    "answer not contained": "the right document was cited, but no gold answer occurs in the answer",
}


class Backend(Protocol):
    """Answers in the API's JSON shape; the in-process and HTTP backends are interchangeable."""

    def ask(self, question: str, top_k: int) -> dict: ...

    def search(self, query: str, top_k: int) -> dict: ...


class InProcessBackend:
    def __init__(self, pipeline, *, mode: str | None = None, generator: str | None = None):
        self.pipeline, self.mode, self.generator = pipeline, mode, generator

    def forget_cached_queries(self) -> None:
        """Each variant embeds its questions itself: no timing of another variant's cached embeddings."""
        clear = getattr(self.pipeline.embedder, "clear_query_cache", None)
        if clear is not None:
            clear()

    def ask(self, question: str, top_k: int) -> dict:
        return self.pipeline.ask(question, top_k, generator=self.generator, mode=self.mode).model_dump(mode="json")

    def search(self, query: str, top_k: int) -> dict:
        passages = self.pipeline.search(query, top_k, mode=self.mode)
        return {"passages": [p.model_dump(mode="json") for p in passages]}


class HttpBackend:
    """POSTs to a running server with httpx; retries connection errors with backoff."""

    def __init__(self, url: str, *, mode: str | None = None, generator: str | None = None, retries: int = 3,
                 timeout_s: float = 60.0, concurrency: int = 4):
        import httpx

        self.mode, self.generator, self.retries = mode, generator, retries
        self._client = httpx.Client(base_url=url.rstrip("/"), timeout=timeout_s,
                                    limits=httpx.Limits(max_connections=max(concurrency, 1) * 2))

    def _post(self, path: str, body: dict) -> dict:
        import httpx

        for attempt in range(self.retries + 1):
            try:
                r = self._client.post(path, json={k: v for k, v in body.items() if v is not None})
            except (httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError, httpx.WriteError,
                    httpx.PoolTimeout):
                if attempt == self.retries:
                    raise
                time.sleep(0.2 * 2 ** attempt)
                continue
            if r.status_code in (429, 503) and attempt < self.retries:  # rate limited / shedding load
                retry_after = r.headers.get("retry-after", "")
                time.sleep(min(float(retry_after), 10.0) if retry_after.isdigit() else 0.2 * 2 ** attempt)
                continue
            r.raise_for_status()
            return r.json()
        raise RuntimeError("unreachable")

    def ask(self, question: str, top_k: int) -> dict:
        return self._post("/ask", {"question": question, "top_k": top_k, "mode": self.mode,
                                   "generator": self.generator})

    def search(self, query: str, top_k: int) -> dict:
        return self._post("/search", {"query": query, "top_k": top_k, "mode": self.mode})


@dataclass
class Record:
    item: EvalItem
    retrieved: list[str]
    response: dict | None
    latency_ms: float
    error: str | None = None
    judged: dict | None = None

    def failure(self, documents: dict[str, str] | None) -> str | None:
        """What went wrong (a key of FAILURES), or None."""
        if self.response is None:
            return None
        r, item = self.response, self.item
        abstained = bool(r.get("abstained"))
        if not item.answerable:
            return None if abstained else "answered unanswerable"
        if abstained:
            return "false abstention"
        if not m.citations_valid(r.get("answer", ""), r.get("citations", []), documents):
            return "invalid citation"
        cited = {c["document_id"] for c in r.get("citations", [])}
        if item.gold_documents and not cited & set(item.gold_documents):
            return "wrong document"
        if item.answers and not m.contains_answer(m.strip_markers(r.get("answer", "")), item.answers):
            return "answer not contained"
        return None

    def to_dict(self, documents: dict[str, str] | None) -> dict:
        r = self.response or {}
        answer = r.get("answer", "")
        golds = self.item.answers
        out = {
            "id": self.item.id, "question": self.item.question, "answerable": self.item.answerable,
            "answers": list(golds), "gold_documents": list(self.item.gold_documents),
            "retrieved_documents": self.retrieved[:10], "answer": answer, "abstained": r.get("abstained"),
            "citations": [{k: c[k] for k in ("id", "document_id", "start", "end", "text")}
                          for c in r.get("citations", [])],
            "latency_ms": round(self.latency_ms, 2), "error": self.error,
        }
        if self.response is not None:
            out["citations_valid"] = m.citations_valid(answer, r.get("citations", []), documents)
            out["failure"] = self.failure(documents)
            if self.judged:
                out.update(self.judged)
            if self.item.gold_documents:
                out["hit@1"] = m.hit_at(self.retrieved, self.item.gold_documents, 1)
            if self.item.answerable and golds:
                out["contains_answer"] = 0.0 if r.get("abstained") else m.contains_answer(m.strip_markers(answer), golds)
        return out


def warm_up(backend: Backend, top_k: int = 5) -> None:
    """One untimed question first (the model's first run is several times slower than later ones), then
    no cached query embeddings left over from it or from another variant."""
    try:
        backend.ask(WARM_UP_QUESTION, top_k)
    except Exception:  # noqa: BLE001 - a failing server shows up in the timed run as failed requests
        pass
    forget = getattr(backend, "forget_cached_queries", None)
    if forget is not None:
        forget()


def run_items(items: Sequence[EvalItem], backend: Backend, *, top_k: int = 5, concurrency: int = 1,
              on_record: Callable[[Record], None] | None = None, judge=None) -> list[Record]:
    """Ask every question (fixed order in the output whatever the concurrency); with a `judge`
    (eval.judge.Judge), also the LLM-judged metrics, outside the timed part."""

    def one(item: EvalItem) -> Record:
        try:
            t0 = time.perf_counter()
            response = backend.ask(item.question, top_k)
            latency = (time.perf_counter() - t0) * 1000
            search = backend.search(item.question, RETRIEVAL_DEPTH)
            record = Record(item, m.ranked_documents(search["passages"]), response, latency)
        except Exception as exc:  # noqa: BLE001 - counted as a failed request, the run goes on
            return Record(item, [], None, 0.0, error=f"{type(exc).__name__}: {exc}")
        if judge is not None:
            record.judged = judge.score(item.question, m.strip_markers(response.get("answer", "")),
                                        bool(response.get("abstained")), response.get("passages", []), item.answers)
        return record

    records: list[Record | None] = [None] * len(items)
    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        futures = {pool.submit(one, item): i for i, item in enumerate(items)}
        from concurrent.futures import as_completed

        for future in as_completed(futures):
            rec = future.result()
            records[futures[future]] = rec
            if on_record:
                on_record(rec)
    return [r for r in records if r is not None]


def summarize(records: Sequence[Record], documents: dict[str, str] | None) -> dict:
    """All metrics of one run. Retrieval metrics over questions with gold documents; answer metrics
    over answerable questions (an abstention there scores 0); abstention over all."""
    ok = [r for r in records if r.response is not None]
    with_gold = [r for r in ok if r.item.gold_documents]
    answerable = [r for r in ok if r.item.answerable and r.item.answers]
    out: dict = {"questions": len(records), "failed_requests": len(records) - len(ok)}
    for k in HIT_KS:
        out[f"hit@{k}"] = m.mean(m.hit_at(r.retrieved, r.item.gold_documents, k) for r in with_gold)
    out["mrr@10"] = m.mean(m.mrr_at(r.retrieved, r.item.gold_documents, 10) for r in with_gold)
    out["ndcg@10"] = m.mean(m.ndcg_at(r.retrieved, r.item.gold_documents, 10) for r in with_gold)
    out["hit_curve"] = [m.mean(m.hit_at(r.retrieved, r.item.gold_documents, k) for r in with_gold)
                        for k in range(1, RETRIEVAL_DEPTH + 1)] if with_gold else []

    def answered(r: Record) -> str:
        return "" if r.response.get("abstained") else m.strip_markers(r.response["answer"])

    out["containment"] = m.mean(m.contains_answer(answered(r), r.item.answers) for r in answerable)
    out["exact_match"] = m.mean(m.exact_match(answered(r), r.item.answers) for r in answerable)
    out["f1"] = m.mean(m.f1(answered(r), r.item.answers) for r in answerable)
    out["answer_words"] = m.mean(m.word_count(r.response["answer"]) for r in answerable
                                 if not r.response.get("abstained"))
    out["citation_validity"] = m.mean(float(m.citations_valid(r.response["answer"], r.response.get("citations", []),
                                                               documents)) for r in ok)
    out["citation_support"] = m.mean(0.0 if r.response.get("abstained") else
                                     m.citation_supports(r.response.get("citations", []), r.item.answers)
                                     for r in answerable)
    out["offsets_checked"] = documents is not None
    if any(not r.item.answerable for r in ok):
        out.update(m.abstention_scores([bool(r.response.get("abstained")) for r in ok],
                                       [r.item.answerable for r in ok]))
    latencies = [r.latency_ms for r in ok]
    for q in (50, 95, 99):
        out[f"latency_p{q}_ms"] = m.percentile(latencies, q)
    kinds = [r.failure(documents) for r in ok]
    out["failures"] = {k: kinds.count(k) for k in FAILURES}
    judged = [r.judged for r in ok if r.judged]
    if judged:
        for key in judged[0]:
            values = [j[key] for j in judged if j.get(key) is not None]
            out[key] = m.mean(values) if values else None
    return out
