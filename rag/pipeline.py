"""The pipeline: one object that the server, the CLI and evaluation all use, so that what is
evaluated is what is served. It composes the parts and owns their lifetimes; the work is theirs:

    store     (rag.store)    the one writer: lock, journal, segments and flushes, refresh; serves `current`
    ingestor  (rag.ingest)   bulk ingest of files or documents
    service   (rag.service)  search, ask, streamed answer events

Components are made on first use (the model loads once, however many requests arrive meanwhile)
and released by `close()` (or leaving a `with` block).
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import AsyncIterator, Callable, Iterable, Sequence

from . import components
from .config import RetrievalMode, Settings
from .conversation import Turn
from .documents import Document, SkippedFile
from .embedding import Embedder
from .errors import IndexNotFoundError, NotReadyError
from .index import Index, IndexConfig
from .ingest import IngestReport, Ingestor
from .journal import Journal
from .retrieval import Filters, Passage, Retriever
from .service import AnswerEvent, AskResult, Prepared, QueryService
from .store import IndexStore

__all__ = ["Pipeline", "IngestReport", "AskResult", "Prepared"]


class Pipeline:
    def __init__(self, settings: Settings | None = None, *, embedder: Embedder | None = None):
        self.settings = settings or Settings()
        self._embedder = embedder
        self._owns_embedder = embedder is None
        self._lock = threading.RLock()
        self._store: IndexStore | None = None
        self._service: QueryService | None = None

    def __enter__(self) -> "Pipeline":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Release what this pipeline made: generators' connections and, if it loaded it, the model."""
        with self._lock:
            if self._store is not None:
                self._store.close()  # stops its maintenance thread
            components.release(self._service, self._embedder, owns_embedder=self._owns_embedder)
            self._service = self._embedder = None

    def with_settings(self, **overrides) -> "Pipeline":
        """A sibling pipeline with some query-time settings changed, sharing the embedder and, when the
        index would be built the same way, the loaded index (evaluation compares variants this way)."""
        settings = Settings(**{**self.settings.model_dump(), **overrides})
        sibling = Pipeline(settings, embedder=self.embedder)
        if self.ready and sibling.index_config == self.index.config:
            sibling.store.adopt(self.index)
        return sibling

    # -- components, made on first use -----------------------------------------------------
    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            with self._lock:
                if self._embedder is None:
                    self._embedder = components.make_embedder(self.settings)
        return self._embedder

    @property
    def index_config(self) -> IndexConfig:
        return components.index_config(self.settings, self.embedder)

    @property
    def store(self) -> IndexStore:
        if self._store is None:
            with self._lock:
                if self._store is None:
                    builder = components.Builder(self.embedder, self.index_config, self.settings.vector_policy)
                    self._store = IndexStore(self.settings, builder)
        return self._store

    @property
    def journal(self) -> Journal:
        """The write-ahead journal (inspecting it loads no model)."""
        return self._store.journal if self._store is not None else Journal(self.settings.index_dir / "journal.jsonl")

    @property
    def ingestor(self) -> Ingestor:
        return Ingestor(self.store)

    @property
    def service(self) -> QueryService:
        if self._service is None:
            with self._lock:
                if self._service is None:
                    retriever = components.make_retriever(self.settings, self.embedder)
                    self._service = QueryService(self.settings, self.store, self.embedder, retriever,
                                                 components.make_generators(self.settings, self.embedder, retriever))
        return self._service

    def ready_service(self) -> QueryService:
        """The query service once the index is loaded; NotReadyError (503) before, without waiting
        for (or starting) the model load."""
        if not self.ready:
            raise NotReadyError("the index is not loaded yet")
        return self.service

    def generator_if_made(self, name: str):
        """A generator, if the service exists already (metrics must not load the model)."""
        service = self._service
        return service.generators.get(name) if service is not None and name in service.generators.names else None

    @property
    def retriever(self) -> Retriever:
        return self.service.retriever

    @property
    def generators(self) -> components.Generators:
        return self.service.generators

    # -- the index -------------------------------------------------------------------------
    @property
    def ready(self) -> bool:
        return self._store is not None and self._store.ready

    @property
    def index(self) -> Index:
        return self.store.current

    def load(self, *, build_from_seeds: bool = True) -> Index:
        """Load the stored index; with none stored, build it from the seed corpus."""
        def build() -> None:
            report = self.ingest([self.settings.seed_dir])
            if report.documents == 0:
                raise IndexNotFoundError(f"no index at {self.settings.index_dir} and no documents in "
                                         f"{self.settings.seed_dir}")

        return self.store.load(build if build_from_seeds else None)

    def open_empty(self) -> Index:
        """Load the stored index, or start an empty one (a new collection)."""
        return self.store.load(lambda: self.ingest_documents([]))

    def refresh(self) -> None:
        self.store.refresh()

    def compact(self) -> None:
        self.store.compact()

    def ingest(self, paths: Iterable[str | Path], *, rebuild: bool = False,
               progress: Callable[[int, int], None] | None = None) -> IngestReport:
        return self._calibrated(self.ingestor.ingest(paths, rebuild=rebuild, progress=progress))

    def ingest_documents(self, documents: Iterable[Document], *, skipped: list[SkippedFile] | None = None,
                         rebuild: bool = False, progress: Callable[[int, int], None] | None = None,
                         replace_all: bool = False, remove_if: Callable[[Document], bool] | None = None,
                         calibrate: bool = True, expected_chars: int | None = None) -> IngestReport:
        """`calibrate=False`: no abstention threshold now (a cluster's shard: its embedder knows only
        the texts it was given, and the coordinator answers)."""
        report = self.ingestor.ingest_documents(documents, skipped=skipped, rebuild=rebuild, progress=progress,
                                                replace_all=replace_all, remove_if=remove_if,
                                                expected_chars=expected_chars)
        return self._calibrated(report) if calibrate else report

    def _calibrated(self, report: IngestReport) -> IngestReport:
        """After a bulk ingest, the corpus' abstention threshold (rag/abstention.py) is computed and
        kept beside the index, so the first question of a server started on it does not wait for it."""
        threshold = getattr(self.service.generators.get("extractive"), "threshold", None)
        if threshold is not None and self.store.ready:
            threshold.refresh(self.index)
        return report

    def put_documents(self, documents: Sequence[Document], *,
                      cancelled: Callable[[], bool] | None = None) -> list[str]:
        return self.store.put(documents, cancelled=cancelled)

    def delete_document(self, doc_id: str) -> None:
        self.store.delete(doc_id)

    # -- queries (library callers may pass filters as a dict and the mode as a string) ------------
    def search(self, query: str, top_k: int | None = None, *, filters: dict | Filters | None = None,
               mode: RetrievalMode | str | None = None) -> list[Passage]:
        return self.service.search(query, top_k, filters=_filters(filters), mode=_mode(mode))

    def prepare(self, question: str, top_k: int | None = None, *, generator: str | None = None,
                filters: dict | Filters | None = None, mode: RetrievalMode | str | None = None,
                history: Sequence[Turn] = ()) -> Prepared:
        return self.service.prepare(question, top_k, generator=generator, filters=_filters(filters),
                                    mode=_mode(mode), history=history)

    def ask(self, question: str, top_k: int | None = None, *, generator: str | None = None,
            filters: dict | Filters | None = None, mode: RetrievalMode | str | None = None,
            history: Sequence[Turn] = ()) -> AskResult:
        return self.service.ask(question, top_k, generator=generator, filters=_filters(filters), mode=_mode(mode),
                                history=history)

    def events(self, prepared: Prepared) -> AsyncIterator[AnswerEvent]:
        return self.service.events(prepared)


def _filters(raw: dict | Filters | None) -> Filters | None:
    return raw if isinstance(raw, Filters) or raw is None else Filters.parse(raw)


def _mode(raw: RetrievalMode | str | None) -> RetrievalMode | None:
    return None if raw is None else RetrievalMode(raw)
