"""The coordinator: the existing app's pipeline, with the index spread over shards.

`ClusterPipeline` offers what `server.app.create_app` uses of a `rag.pipeline.Pipeline`: a question is
embedded once here, every shard returns its candidates under global BM25 statistics, and the union
is ranked by the same `Retriever` and answered by the same generators as on one machine. Writes go
to the shard owning the document id. A shard that does not answer makes the request fail with 503
naming it, or, with `RAG_CLUSTER_ALLOW_PARTIAL`, answer from the others with the response flagged.
"""
from __future__ import annotations

import contextvars
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, Sequence

from rag import components
from rag.config import RetrievalMode, Settings
from rag.documents import Document
from rag.embedding import Embedder
from rag.errors import NotReadyError, UnavailableError
from rag.lexical import tokenize
from rag.retrieval import Filters, Passage
from rag.service import Prepared, QueryService

from .pool import PoolIndex
from .shard import shard_of


log = logging.getLogger("rag.cluster")


class ShardsUnavailableError(UnavailableError):
    """Some shards did not answer: a result without them would be silently partial."""


class ShardClient(Protocol):
    """Calls a method of one shard (in-process, or a Ray Serve deployment): `start` sends the call
    and returns a waiter that gives the result or raises within `timeout_s`."""

    def start(self, method: str, *args: Any) -> Callable[[float], Any]: ...


@dataclass
class Answered:
    """Which shards a response drew on (read by the middleware that flags degraded responses)."""

    shards: int = 0
    missing: set[int] = field(default_factory=set)


ANSWERED: contextvars.ContextVar[Answered | None] = contextvars.ContextVar("rag_cluster_answered", default=None)


class ShardSet:
    def __init__(self, clients: Sequence[ShardClient], *, timeout_s: float = 10.0, allow_partial: bool = False):
        self.clients = list(clients)
        self.timeout_s = timeout_s
        self.allow_partial = allow_partial
        self.failures: dict[int, str] = {}  # shard -> why its last call failed (cleared when it answers)

    def __len__(self) -> int:
        return len(self.clients)

    def call(self, shard: int, method: str, *args: Any) -> Any:
        """One shard's answer; 503 naming the shard when it cannot give one."""
        return self._wait(shard, self._start(shard, method, args), strict=True)

    def fan_out(self, method: str, *args: Any, partial: bool | None = None) -> dict[int, Any]:
        """Every shard's answer, sent at once. Missing shards raise 503 unless partial answers are
        allowed; then the response is flagged with them (see `Answered`)."""
        pending = {i: self._start(i, method, args) for i in range(len(self.clients))}
        results = {i: r for i, wait in pending.items() if (r := self._wait(i, wait, strict=False)) is not _MISSING}
        missing = set(pending) - set(results)
        if missing:
            if not (self.allow_partial if partial is None else partial) or not results:
                raise ShardsUnavailableError(f"shard(s) {sorted(missing)} of {len(self.clients)} did not answer ("
                                             + "; ".join(f"{i}: {self.failures.get(i, '?')}" for i in sorted(missing))
                                             + "); retry shortly")
            answered = ANSWERED.get()
            if answered is not None:
                answered.shards, answered.missing = len(self.clients), answered.missing | missing
        return results

    def _start(self, shard: int, method: str, args: tuple):
        try:
            return self.clients[shard].start(method, *args)
        except Exception as exc:  # noqa: BLE001 - a shard that cannot even be called is missing
            error = exc
            return _failed(error)

    def _wait(self, shard: int, wait, *, strict: bool):
        try:
            result = wait(self.timeout_s)
        except Exception as exc:  # noqa: BLE001 - sorted below: the request's own errors pass through
            cause = getattr(exc, "cause", None) or exc
            from rag.errors import RagError

            if isinstance(cause, RagError) and not isinstance(cause, UnavailableError):
                raise cause from None  # e.g. 404 for an unknown document: the shard answered
            self.failures[shard] = f"{type(cause).__name__}: {str(cause).splitlines()[0][:200] if str(cause) else ''}"
            if strict:
                raise ShardsUnavailableError(f"shard {shard} did not answer ({self.failures[shard]}); "
                                             "retry shortly") from None
            return _MISSING
        self.failures.pop(shard, None)
        return result


_MISSING = object()


def _failed(exc: Exception):
    def wait(_: float):
        raise exc
    return wait


class ClusterService(QueryService):
    """Search and answers over the shards (generation is the library's own, over the pool)."""

    def __init__(self, settings: Settings, shards: ShardSet, embedder: Embedder, retriever, generators):
        super().__init__(settings, None, embedder, retriever, generators)  # type: ignore[arg-type]
        self.shards = shards

    def pool(self, query: str, top_k: int, filters: Filters | None, mode: RetrievalMode | None, vector):
        mode = mode or self.retriever.mode
        terms = set(tokenize([query])[0])
        stats = sum(self.shards.fan_out("stats", terms).values())
        raw = filters.raw if filters is not None else None
        parts = self.shards.fan_out("candidates", query, vector, top_k, mode, stats, raw)
        lookup = lambda more: sum(self.shards.fan_out("stats", more, partial=True).values())  # noqa: E731
        pool = PoolIndex([parts[i] for i in sorted(parts)], stats, lookup, terms)
        return pool, self.retriever.search(pool, query, top_k, mode=mode, query_vector=vector)

    def _retrieve_pool(self, query: str, top_k: int | None, filters, mode):
        vector = self.embedder.encode_query(query)
        pool, passages = self.pool(query, self.settings.top_k if top_k is None else top_k, filters, mode, vector)
        return pool, passages, vector

    def search(self, query: str, top_k: int | None = None, *, filters: Filters | None = None,
               mode: RetrievalMode | None = None) -> list[Passage]:
        return self._retrieve_pool(self.check_question(query), top_k, filters, mode)[1]

    def prepare(self, question: str, top_k: int | None = None, *, generator: str | None = None,
                filters: Filters | None = None, mode: RetrievalMode | None = None, history=()) -> Prepared:
        t0 = time.perf_counter()
        gen = self.generators.get(generator)
        question = self.check_question(question)
        query = self.standalone_query(question, history, gen)
        pool, passages, vector = self._retrieve_pool(query, top_k, filters, mode)
        return Prepared(question=question, query=query, query_vector=vector, passages=passages, index=pool,
                        generator=gen, started=t0, retrieved=time.perf_counter())


class _Documents:
    """Every shard's documents as one sequence (listing pages through the API)."""

    def __init__(self, shards: ShardSet, counts: dict[int, int]):
        self._shards, self._counts = shards, counts

    def __len__(self) -> int:
        return sum(self._counts.values())

    def __getitem__(self, key: slice) -> list[Document]:
        ids = self._shards.fan_out("document_ids")
        order = [(i, d) for i in sorted(ids) for d in ids[i]][key]
        wanted: dict[int, list[str]] = {}
        for i, d in order:
            wanted.setdefault(i, []).append(d)
        found = {d.id: d for i, chunk in wanted.items() for d in self._shards.call(i, "documents", chunk)}
        return [found[d] for _, d in order if d in found]


class _Sized:
    def __init__(self, n: int):
        self._n = n

    def __len__(self) -> int:
        return self._n


class ClusterView:
    """What the app reads of `pipeline.index` (sizes, one document, a page of documents); the shards
    are asked only for what is read."""

    def __init__(self, shards: ShardSet):
        self._shards = shards
        self._infos: dict[int, dict] | None = None

    def _sizes(self) -> dict[int, dict]:
        if self._infos is None:
            self._infos = self._shards.fan_out("info")  # partial only where allowed, and then flagged
        return self._infos

    @property
    def documents(self) -> _Documents:
        return _Documents(self._shards, {i: info["documents"] for i, info in self._sizes().items()})

    @property
    def chunks(self) -> _Sized:
        return _Sized(sum(info["chunks"] for info in self._sizes().values()))

    def document(self, doc_id: str) -> Document | None:
        return self._shards.call(shard_of(doc_id, len(self._shards)), "document", doc_id)

    def live_documents(self) -> _Documents:
        return self.documents

    @property
    def document_count(self) -> int:
        return sum(info["documents"] for info in self._sizes().values())

    @property
    def chunk_count(self) -> int:
        return sum(info["chunks"] for info in self._sizes().values())


class _NoJournal:
    """Each shard keeps its own journal; its damage is the shard's to report."""

    def damage(self) -> list:
        return []

    def set_aside(self) -> list:
        return []


class ClusterPipeline:
    """A `Pipeline` for the app whose index lives in shards."""

    def __init__(self, settings: Settings, shards: ShardSet, *, embedder: Embedder | None = None):
        self.settings = settings
        self.shards = shards
        self._embedder = embedder
        self._owns_embedder = embedder is None
        self._service: ClusterService | None = None
        self._lock = threading.Lock()
        self._loaded = False
        self.journal = _NoJournal()

    @property
    def embedder(self) -> Embedder:
        with self._lock:
            if self._embedder is None:
                self._embedder = components.make_embedder(self.settings)
        return self._embedder

    @property
    def service(self) -> ClusterService:
        with self._lock:
            if self._service is None:
                embedder = self._embedder or components.make_embedder(self.settings)
                self._embedder = embedder
                self._service = ClusterService(self.settings, self.shards, embedder,
                                               components.make_retriever(self.settings, embedder),
                                               components.make_generators(self.settings, embedder))
        return self._service

    @property
    def generators(self):
        return self.service.generators

    def generator_if_made(self, name: str):
        service = self._service
        return service.generators.get(name) if service is not None and name in service.generators.names else None

    def load(self, *, wait_s: float = 600.0, **_: Any) -> None:
        """Wait until every shard answers (a shard opens its index when its replica starts; a node
        that is down is waited for, up to `wait_s`)."""
        deadline = time.monotonic() + wait_s
        while True:
            try:
                self.shard_infos(partial=False)
                break
            except UnavailableError as exc:
                if time.monotonic() > deadline:
                    raise
                log.info("waiting for the shards: %s", exc)
                time.sleep(1.0)
        self.service  # the model, before the first question  # noqa: B018
        self._loaded = True

    @property
    def ready(self) -> bool:
        return self._loaded

    def ready_service(self) -> ClusterService:
        if not self._loaded:
            raise NotReadyError("the shards are not loaded yet")
        return self.service

    def shard_infos(self, *, partial: bool = True) -> dict[int, dict]:
        return self.shards.fan_out("info", partial=partial)

    @property
    def index(self) -> ClusterView:
        return ClusterView(self.shards)

    def refresh(self) -> None:
        """Each shard refreshes its own snapshot when it is asked."""

    def compact(self) -> None:
        try:
            self.shards.fan_out("compact", partial=True)
        except UnavailableError:
            pass  # a shard that is down compacts when it next stops cleanly

    def close(self) -> None:
        with self._lock:
            components.release(self._service, self._embedder, owns_embedder=self._owns_embedder)
            self._service = self._embedder = None

    # -- queries (the CLI and tests; the app goes through `ready_service`) -----------------------
    def search(self, query: str, top_k: int | None = None, *, filters: dict | None = None,
               mode: RetrievalMode | str | None = None) -> list[Passage]:
        return self.service.search(query, top_k, filters=Filters.parse(filters) if filters else None,
                                   mode=RetrievalMode(mode) if mode else None)

    def ask(self, question: str, top_k: int | None = None, **kwargs):
        return self.service.ask(question, top_k, **kwargs)

    # -- writes: each to the shard owning the document ----------------------------------------
    def put_documents(self, documents: Sequence[Document], *, cancelled: Callable[[], bool] | None = None
                      ) -> list[str]:
        groups: dict[int, list[int]] = {}
        for k, doc in enumerate(documents):
            groups.setdefault(shard_of(doc.id, len(self.shards)), []).append(k)
        if cancelled is not None and cancelled():
            from rag.errors import CancelledError

            raise CancelledError("the client went away; the write was not made")
        waits = {i: self.shards._start(i, "put", ([documents[k] for k in ks],)) for i, ks in groups.items()}
        outcomes: list[str] = [""] * len(documents)
        error: Exception | None = None
        for i, ks in groups.items():  # every shard is waited for, so no write is left unreported
            try:
                for k, outcome in zip(ks, self.shards._wait(i, waits[i], strict=True)):
                    outcomes[k] = outcome
            except Exception as exc:  # noqa: BLE001 - raised once all are in
                error = error or exc
        if error is not None:
            raise error
        return outcomes

    def delete_document(self, doc_id: str) -> None:
        self.shards.call(shard_of(doc_id, len(self.shards)), "delete", doc_id)
