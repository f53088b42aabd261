"""The one pipeline that the server, the CLI and the evaluation runner all call."""
from __future__ import annotations

import fcntl
import logging
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import AsyncIterator, Callable, Iterable, Iterator, Sequence

from .chunking import SENTENCE_SPLITTER
from .config import RetrievalMode, Settings
from .conversation import Turn, is_follow_up, standalone_query
from .documents import Document, SkippedFile, display_source, load_paths, same_document
from .embedding import Embedder, SentenceTransformerEmbedder, batch_threads
from .errors import (DocumentNotFoundError, GeneratorError, IndexCorruptError, IndexMismatchError, IndexNotFoundError,
                     InputTooLargeError, InvalidInputError,
                     NotReadyError, UnknownGeneratorError)
from .generation import Answer, Generator
from .generation.extractive import ExtractiveConfig, ExtractiveGenerator
from .generation.openai_chat import OpenAIChatGenerator, OpenAIConfig
from .index import Index, IndexConfig, build_index, load_index, read_stored_documents
from .journal import Change, Journal
from .retrieval import Filters, Passage, Retriever

log = logging.getLogger("rag.pipeline")


@dataclass
class AskResult:
    answer: Answer
    passages: list[Passage]
    timings_ms: dict[str, float]
    query: str | None = None

    def to_dict(self) -> dict:
        out = {
            "query": self.query,
            "answer": self.answer.text,
            "abstained": self.answer.abstained,
            "generator": self.answer.generator,
            "citations": [c.to_dict() for c in self.answer.citations],
            "segments": [seg.to_dict() for seg in self.answer.segments],
            "passages": [p.to_dict() for p in self.passages],
            "timings_ms": {k: round(v, 2) for k, v in self.timings_ms.items()},
        }
        if self.answer.fallback:
            out["fallback"] = self.answer.fallback
        return out


@dataclass
class Prepared:
    """A validated request with its passages retrieved, ready for a generator."""

    question: str
    query: str  # what retrieval used: the question, or its standalone rewrite for a follow-up
    passages: list[Passage]
    index: Index
    generator: Generator
    started: float
    retrieved: float

    def result(self, answer: Answer) -> AskResult:
        done = time.perf_counter()
        return AskResult(answer=answer, passages=self.passages, query=self.query,
                         timings_ms={"retrieve": (self.retrieved - self.started) * 1000,
                                     "generate": (done - self.retrieved) * 1000,
                                     "total": (done - self.started) * 1000})


@dataclass
class IngestReport:
    documents: int = 0  # documents in the index afterwards
    chunks: int = 0
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0
    skipped: list[SkippedFile] = field(default_factory=list)
    rebuilt: str | None = None  # why everything was re-embedded, if it was


class Pipeline:
    def __init__(self, settings: Settings | None = None, *, embedder: Embedder | None = None):
        self.settings = settings or Settings()
        self._embedder = embedder
        self._index: Index | None = None
        self._write_lock = threading.RLock()
        self._init_lock = threading.RLock()
        self._holding = 0  # nesting depth of _exclusive in the thread that holds it
        self._checked_at = 0.0
        self.refresh_interval_s = 1.0
        self._seen_state: tuple[str | None, int] = (None, 0)
        self._last_seq = 0
        self._since_snapshot = 0
        self._generators: dict[str, Generator] | None = None

    def with_settings(self, **overrides) -> "Pipeline":
        """A sibling pipeline with some settings changed, sharing the embedder and, when the index
        would be built the same way, the loaded index (used by evaluation to compare variants)."""
        settings = Settings(**{**self.settings.model_dump(), **overrides})
        sibling = Pipeline(settings, embedder=self._embedder)
        if self._index is not None and sibling.index_config == self._index.config:
            sibling._index = self._index
        return sibling

    # -- components ----------------------------------------------------------------------
    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            with self._init_lock:  # one model, however many requests arrive while it loads
                if self._embedder is None:
                    self._embedder = self._make_embedder()
        return self._embedder

    def _make_embedder(self) -> Embedder:
        s = self.settings
        return SentenceTransformerEmbedder(s.embed_model, backend=s.embed_backend, batch_size=s.embed_batch_size,
                                           threads=s.embed_threads, cache_dir=s.data_dir / "models")

    @property
    def index_config(self) -> IndexConfig:
        s = self.settings
        return IndexConfig(embed_model=s.embed_model, dimension=self.embedder.dimension,
                           embed_precision=self.embedder.precision, chunk_size=s.chunk_size,
                           chunk_overlap=s.chunk_overlap, index_titles=s.index_titles,
                           sentence_splitter=SENTENCE_SPLITTER)

    @property
    def retriever(self) -> Retriever:
        s = self.settings
        return Retriever(self.embedder, mode=s.retrieval_mode, fusion=s.fusion, dense_weight=s.dense_weight,
                         sentence_weight=s.sentence_weight,
                         rrf_k=s.rrf_k, candidates=s.candidates)

    @property
    def generators(self) -> dict[str, Generator]:
        if self._generators is None:
            with self._init_lock:
                if self._generators is None:
                    self._generators = self._make_generators()
        return self._generators

    def _make_generators(self) -> dict[str, Generator]:
        s = self.settings
        extractive = ExtractiveGenerator(self.embedder, ExtractiveConfig(
            abstain_threshold=s.abstain_threshold, max_sentences=s.answer_max_sentences, max_words=s.answer_max_words))
        llm = OpenAIChatGenerator(OpenAIConfig(
            base_url=s.openai_base_url, model=s.openai_model, api_key=s.openai_api_key, timeout_s=s.openai_timeout_s,
            connect_timeout_s=s.openai_connect_timeout_s, max_retries=s.openai_max_retries,
            breaker_threshold=s.openai_breaker_threshold, breaker_cooldown_s=s.openai_breaker_cooldown_s))
        return {extractive.name: extractive, llm.name: llm}

    @property
    def ready(self) -> bool:
        return self._index is not None

    @property
    def index(self) -> Index:
        if self._index is None:
            raise NotReadyError("the index is not loaded yet")
        return self._index

    # -- lifecycle -----------------------------------------------------------------------
    @property
    def journal(self) -> Journal:
        return Journal(self.settings.index_dir / "journal.jsonl")

    def load(self, *, build_from_seeds: bool = True) -> Index:
        """Load the stored snapshot and replay the journal over it; with nothing stored, build the
        index from the seed corpus. Under the writer lock, so no other process's write slips between
        reading the snapshot and reading the journal."""
        config = self.index_config
        with self._exclusive():
            try:
                index = load_index(self.settings.index_dir, config, policy=self.settings.vector_policy)
            except IndexNotFoundError:
                if not build_from_seeds:
                    raise
                report = self.ingest([self.settings.seed_dir])
                if report.documents == 0:
                    raise IndexNotFoundError(f"no index at {self.settings.index_dir} and no documents in "
                                             f"{self.settings.seed_dir}") from None
                return self.index
            changes = self.journal.read(after=index.journal_seq)
            if changes:
                index = self._apply(index, changes)
            self._index, self._last_seq = index, index.journal_seq
        return index

    def _stored(self, *, fresh: bool = False) -> Index | None:
        """The current index (loaded, journal replayed), or None when nothing is stored."""
        if self._index is not None and not fresh:
            return self._index
        try:
            index = load_index(self.settings.index_dir, policy=self.settings.vector_policy)
        except IndexNotFoundError:
            return None
        changes = self.journal.read(after=index.journal_seq)
        return self._apply(index, changes, config=index.config) if changes else index

    def _apply(self, index: Index, changes: Sequence[Change], *, config: IndexConfig | None = None) -> Index:
        """A new snapshot with `changes` applied; only changed documents are chunked and embedded."""
        docs = {d.id: d for d in index.documents}
        for c in changes:
            if c.op == "put":
                docs[c.document.id] = c.document
            else:
                docs.pop(c.document_id, None)
        new = build_index(list(docs.values()), self.embedder, config or self.index_config, previous=index,
                          policy=self.settings.vector_policy)
        new.journal_seq = changes[-1].seq
        return new

    def refresh(self) -> None:
        """Pick up what another process (say `rag ingest`) wrote to the data directory since we last
        looked: a cheap check, at most once every `refresh_interval_s`; a reload only on change."""
        now = time.monotonic()
        if self._index is None or now - self._checked_at < self.refresh_interval_s:
            return
        self._checked_at = now
        if self._disk_state() != self._seen_state:
            with self._exclusive():  # reloads from disk when the state differs from what we saw
                pass

    def _disk_state(self) -> tuple[str | None, int]:
        pointer, journal = self.settings.index_dir / "CURRENT", self.journal.path
        return (pointer.read_text() if pointer.exists() else None,
                journal.stat().st_size if journal.exists() else 0)

    @contextmanager
    def _exclusive(self) -> Iterator[None]:
        """Serialise writers, within this process (a lock) and across processes (flock on a lock
        file), and start from what is on disk if another process wrote since we last looked."""
        with self._write_lock:
            if self._holding:  # re-entered by the same thread (load -> ingest seeds): already locked
                self._holding += 1
                try:
                    yield
                finally:
                    self._holding -= 1
                return
            self.settings.data_dir.mkdir(parents=True, exist_ok=True)
            with open(self.settings.data_dir / ".writer.lock", "a+") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                self._holding = 1
                try:
                    if self._index is not None and self._disk_state() != self._seen_state:
                        self._index = self._stored(fresh=True)
                    yield
                    self._seen_state = self._disk_state()
                finally:
                    self._holding = 0
                    fcntl.flock(lock, fcntl.LOCK_UN)

    def ingest(self, paths: Iterable[str | Path], *, rebuild: bool = False,
               progress: Callable[[int, int], None] | None = None) -> IngestReport:
        """Bring the index in line with files: add new, update changed (by content), and remove
        documents whose files are gone from the directories named."""
        paths = [Path(p) for p in paths]
        loaded = load_paths(paths)
        present = {d.source for d in loaded.documents} | {s.path for s in loaded.skipped}
        roots = [display_source(p) for p in paths]

        def gone(doc: Document) -> bool:
            under = any(doc.source == r or doc.source.startswith(r.rstrip("/") + "/")
                        or (r == "." and not doc.source.startswith("/")) for r in roots)
            return under and doc.source not in present and not Path(doc.source).exists()

        return self.ingest_documents(loaded.documents, skipped=loaded.skipped, rebuild=rebuild, progress=progress,
                                     remove_if=gone)

    def ingest_documents(self, documents: list[Document], *, skipped: list[SkippedFile] | None = None,
                         rebuild: bool = False, progress: Callable[[int, int], None] | None = None,
                         replace_all: bool = False,
                         remove_if: Callable[[Document], bool] | None = None) -> IngestReport:
        """Bulk add or replace documents by id and write a new snapshot; unchanged documents keep
        their vectors (no embedding). With `replace_all` the index holds exactly `documents`."""
        report = IngestReport(skipped=list(skipped or []))
        config = self.index_config
        with self._exclusive():
            stored_docs: list[Document] = []
            try:
                previous = self._stored()
                stored_docs = previous.documents if previous is not None else []
            except (IndexCorruptError, IndexMismatchError) as exc:  # damaged, or an older format
                if not rebuild:
                    raise
                previous = None
                stored_docs = self._salvage_documents()
                report.rebuilt = f"the stored index could not be used ({exc}); rebuilt from its stored documents"
            if previous is not None and previous.config != config:
                report.rebuilt = "; ".join(config.differences(previous.config))
            merged: dict[str, Document] = {} if replace_all else {d.id: d for d in stored_docs}
            if remove_if is not None:
                for doc in stored_docs:
                    if remove_if(doc) and merged.pop(doc.id, None) is not None:
                        report.removed += 1
            for doc in documents:
                old = previous.document(doc.id) if previous is not None else None
                if old is None:
                    report.added += 1
                elif same_document(old, doc) and not rebuild:
                    report.unchanged += 1
                else:
                    report.updated += 1
                merged[doc.id] = doc
            reuse = None if rebuild else previous
            with batch_threads():
                index = build_index(list(merged.values()), self.embedder, config, previous=reuse, progress=progress,
                                    policy=self.settings.vector_policy)
            index.journal_seq = max(previous.journal_seq if previous else 0, self.journal.last_seq())
            index.save(self.settings.index_dir)
            self.journal.clear()
            self._index, self._last_seq, self._since_snapshot = index, index.journal_seq, 0
        report.documents, report.chunks = len(index.documents), len(index.chunks)
        return report

    def _salvage_documents(self) -> list[Document]:
        """Documents of a damaged index (its checked documents file plus the journal), or none."""
        try:
            docs, seq = read_stored_documents(self.settings.index_dir)
        except (IndexCorruptError, IndexNotFoundError):
            return []
        by_id = {d.id: d for d in docs}
        for c in self.journal.read(after=seq):
            if c.op == "put":
                by_id[c.document.id] = c.document
            else:
                by_id.pop(c.document_id, None)
        return list(by_id.values())

    # -- live changes (the document API) -------------------------------------------------
    def put_documents(self, documents: Sequence[Document]) -> list[str]:
        """Add or replace documents; returns each one's outcome ("added", "updated", "unchanged").
        When this returns, the change is durable (journaled, fsynced) and visible to the next query."""
        with self._exclusive():
            index = self.index
            outcomes, changes = [], []
            seq = max(index.journal_seq, self._last_seq)
            for doc in documents:
                old = index.document(doc.id)
                pending = next((c.document for c in reversed(changes) if c.document.id == doc.id), None)
                if (pending or old) is not None and same_document(pending or old, doc):
                    outcomes.append("unchanged")
                    continue
                outcomes.append("added" if old is None and pending is None else "updated")
                seq += 1
                changes.append(Change(seq=seq, op="put", document=doc))
            if changes:
                self._commit(index, changes)
            return outcomes

    def delete_document(self, doc_id: str) -> None:
        with self._exclusive():
            index = self.index
            if index.document(doc_id) is None:
                raise DocumentNotFoundError(f"no document with id {doc_id!r}")
            self._commit(index, [Change(seq=max(index.journal_seq, self._last_seq) + 1, op="delete",
                                        document_id=doc_id)])

    def _commit(self, index: Index, changes: list[Change]) -> None:
        new = self._apply(index, changes)  # embed first: a failure here leaves nothing half-written
        self.journal.append(changes)  # durable from here on
        self._last_seq = changes[-1].seq
        self._index = new  # visible to the next query
        self._since_snapshot += len(changes)
        if self._since_snapshot >= self.settings.snapshot_every:
            try:
                self._snapshot()
            except OSError as exc:  # the change is durable in the journal; compaction can wait
                log.error("snapshot failed (the journal keeps every change): %s", exc)

    def compact(self) -> None:
        """Write a snapshot holding every journaled change, then empty the journal."""
        with self._exclusive():
            if self._index is not None and self.journal.read(after=self._index.journal_seq - 1):
                self._snapshot()

    def _snapshot(self) -> None:
        """(Under `_exclusive`.) The snapshot first, then the journal: a crash between the two only
        leaves journal records the snapshot already holds, which replay skips by sequence number."""
        self._index.save(self.settings.index_dir)
        self.journal.clear()
        self._since_snapshot = 0

    # -- queries -------------------------------------------------------------------------
    def check_question(self, question: str) -> str:
        if not isinstance(question, str) or not question.strip():
            raise InvalidInputError("question must not be empty")
        if len(question) > self.settings.max_question_chars:
            raise InputTooLargeError(f"question is {len(question)} characters; the limit is "
                                     f"{self.settings.max_question_chars}")
        return question.strip()

    def search(self, query: str, top_k: int | None = None, *, filters: dict | Filters | None = None,
               mode: RetrievalMode | str | None = None) -> list[Passage]:
        self.refresh()
        index = self.index  # 503 while loading
        query = self.check_question(query)
        if not isinstance(filters, Filters):
            filters = Filters.parse(filters)
        return self.retriever.search(index, query, self.settings.top_k if top_k is None else top_k,
                                     mode=RetrievalMode(mode) if mode else None, filters=filters)

    def generator(self, name: str | None) -> Generator:
        name = name or self.settings.generator
        try:
            return self.generators[name]
        except KeyError:
            raise UnknownGeneratorError(name, list(self.generators)) from None

    def standalone_query(self, question: str, history: Sequence[Turn], generator: Generator) -> str:
        """Retrieval query for a follow-up: rewritten by the LLM when the openai generator is in use
        (falling back to the rule if it fails), else by the documented non-LLM rule."""
        if not history or not is_follow_up(question):
            return question
        if isinstance(generator, OpenAIChatGenerator):
            try:
                return self.check_question(generator.rewrite(question, history))
            except (GeneratorError, InvalidInputError, InputTooLargeError):
                pass
        return standalone_query(question, history)

    def prepare(self, question: str, top_k: int | None = None, *, generator: str | None = None,
                filters: dict | Filters | None = None, mode: RetrievalMode | str | None = None,
                history: Sequence[Turn] = ()) -> Prepared:
        """Everything before generation: validation, the standalone query, retrieval. Errors in the
        request surface here, before any streamed byte."""
        t0 = time.perf_counter()
        self.refresh()
        index = self.index  # one snapshot for the whole request (503 while loading)
        gen = self.generator(generator)
        question = self.check_question(question)
        if not isinstance(filters, Filters):
            filters = Filters.parse(filters)
        query = self.standalone_query(question, history, gen)
        passages = self.retriever.search(index, query, self.settings.top_k if top_k is None else top_k,
                                         mode=RetrievalMode(mode) if mode else None, filters=filters)
        return Prepared(question=question, query=query, passages=passages, index=index, generator=gen,
                        started=t0, retrieved=time.perf_counter())

    def ask(self, question: str, top_k: int | None = None, *, generator: str | None = None,
            filters: dict | Filters | None = None, mode: RetrievalMode | str | None = None,
            history: Sequence[Turn] = ()) -> AskResult:
        p = self.prepare(question, top_k, generator=generator, filters=filters, mode=mode, history=history)
        try:
            answer = p.generator.generate(p.query, p.passages, p.index)
        except GeneratorError as exc:
            fallback = self._fallback_for(p.generator)
            if fallback is None:
                raise
            answer = fallback.generate(p.query, p.passages, p.index)
            answer.fallback = {"from": p.generator.name, "reason": str(exc)}
        return p.result(answer)

    def _fallback_for(self, gen: Generator) -> Generator | None:
        extractive = self.generators["extractive"]
        return None if gen is extractive or not self.settings.openai_fallback else extractive

    async def stream(self, p: Prepared) -> AsyncIterator[tuple[str, dict]]:
        """Server-sent events for a prepared request: `passages`, then `delta`s as the answer is
        produced, then `citations` (the final answer) and `done`; `error` if it fails midway."""
        yield "passages", {"passages": [x.to_dict() for x in p.passages], "query": p.query}
        answer: Answer | None = None
        sent = False
        gen = p.generator
        while True:
            try:
                async for piece in gen.astream(p.query, p.passages, p.index):
                    if isinstance(piece, Answer):
                        answer = piece
                    else:
                        sent = True
                        yield "delta", {"text": piece}
            except GeneratorError as exc:
                fallback = self._fallback_for(gen)
                if sent or fallback is None:
                    yield "error", {"detail": str(exc)}
                    return
                answer, fallback_note, gen = None, {"from": gen.name, "reason": str(exc)}, fallback
                continue
            break
        if answer is None:
            yield "error", {"detail": f"generator {gen.name!r} produced no answer"}
            return
        if gen is not p.generator:
            answer.fallback = fallback_note
        result = p.result(answer).to_dict()
        yield "citations", {k: v for k, v in result.items() if k not in ("passages", "timings_ms")}
        yield "done", {"timings_ms": result["timings_ms"]}
