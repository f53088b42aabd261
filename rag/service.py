"""The query service: search, ask, and the typed events of a streamed answer.

One road for a question: validate, rewrite a follow-up, embed the query once, retrieve over one
snapshot, generate (with the fallback generator when an LLM fails). The server turns the events
into SSE frames; the library knows nothing of HTTP.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import AsyncIterator, Sequence, Union

import numpy as np
from pydantic import BaseModel, Field

from .config import RetrievalMode, Settings
from .conversation import Turn, is_follow_up, standalone_query
from .embedding import Embedder
from .errors import GeneratorError, InputTooLargeError, InvalidInputError
from .generation import Answer, Citation, Fallback, Generator, Rewriter, Segment
from .index import Index
from .retrieval import Filters, Passage, Retriever
from .store import IndexStore
from .components import Generators


class AskResult(BaseModel):
    """An answer with its evidence: the result type of `ask`, served as is by `/ask`."""

    query: str = Field(description="What retrieval used: the question or its standalone rewrite.")
    answer: str
    abstained: bool
    generator: str
    citations: list[Citation]
    passages: list[Passage]
    timings_ms: dict[str, float]
    fallback: Fallback | None = None
    segments: list[Segment] = Field(default_factory=list, description="The answer as quoted text with its "
                                    "citation ids; `answer` is rendered from them.")
    usage: dict | None = Field(None, exclude=True)  # the LLM server's token counts (for the OpenAI endpoint)


class SearchResult(BaseModel):
    passages: list[Passage]


# -- the events of a streamed answer ------------------------------------------------------------
@dataclass(frozen=True)
class Retrieved:
    """First, as soon as retrieval is done."""

    passages: list[Passage]
    query: str


@dataclass(frozen=True)
class Delta:
    """Answer text as it is produced."""

    text: str


@dataclass(frozen=True)
class Final:
    """The final answer (an LLM reply without valid citations has become an abstention here)."""

    result: AskResult


@dataclass(frozen=True)
class Failed:
    """Generation failed after streaming began (before it, the fallback generator answers)."""

    detail: str


AnswerEvent = Union[Retrieved, Delta, Final, Failed]


@dataclass
class Prepared:
    """A validated request with its passages retrieved, ready for a generator."""

    question: str
    query: str
    query_vector: np.ndarray | None
    passages: list[Passage]
    index: Index
    generator: Generator
    started: float
    retrieved: float

    def result(self, answer: Answer) -> AskResult:
        done = time.perf_counter()
        return AskResult(query=self.query, answer=answer.text, abstained=answer.abstained, generator=answer.generator,
                         citations=answer.citations, passages=self.passages, fallback=answer.fallback,
                         segments=answer.segments, usage=answer.usage,
                         timings_ms={"retrieve": round((self.retrieved - self.started) * 1000, 2),
                                     "generate": round((done - self.retrieved) * 1000, 2),
                                     "total": round((done - self.started) * 1000, 2)})


class QueryService:
    def __init__(self, settings: Settings, store: IndexStore, embedder: Embedder, retriever: Retriever,
                 generators: Generators):
        self.settings = settings
        self.store = store
        self.embedder = embedder
        self.retriever = retriever
        self.generators = generators
        self._refreshed_at = float("-inf")  # never looked (monotonic time may start near 0 at boot)

    def _refresh(self) -> None:
        self.store.refresh()
        self._refreshed_at = time.monotonic()

    def may_read_disk(self) -> bool:
        """Whether the next search or question may read the disk: the store looks for other processes'
        writes at most once per `refresh_interval_s` and reloads the index when it finds one. Counted
        from this service's own looks, so it errs towards yes. (The server answers a lone question on
        its event loop only when this says no.)"""
        return time.monotonic() - self._refreshed_at >= getattr(self.store, "refresh_interval_s", 0.0)

    def check_question(self, question: str) -> str:
        if not isinstance(question, str) or not question.strip():
            raise InvalidInputError("question must not be empty")
        if len(question) > self.settings.max_question_chars:
            raise InputTooLargeError(f"question is {len(question)} characters; the limit is "
                                     f"{self.settings.max_question_chars}")
        return question.strip()

    def _retrieve(self, index: Index, query: str, top_k: int | None, filters: Filters | None,
                  mode: RetrievalMode | None) -> tuple[list[Passage], np.ndarray]:
        """Passages for `query`, embedding it once, for retrieval (every mode: the calibrated passage
        score uses its cosines) and for the generator."""
        vector = self.embedder.encode_query(query)
        passages = self.retriever.search(index, query, self.settings.top_k if top_k is None else top_k,
                                         mode=mode, filters=filters, query_vector=vector)
        return passages, vector

    def search(self, query: str, top_k: int | None = None, *, filters: Filters | None = None,
               mode: RetrievalMode | None = None) -> list[Passage]:
        """Per-call arguments override the settings (`RAG_TOP_K`, `RAG_RETRIEVAL_MODE`)."""
        self._refresh()
        index = self.store.current  # 503 while loading
        query = self.check_question(query)
        return self._retrieve(index, query, top_k, filters, mode)[0]

    def standalone_query(self, question: str, history: Sequence[Turn], generator: Generator) -> str:
        """Retrieval query for a follow-up: rewritten by the LLM when the generator can (falling back
        to the rule if it fails), else by the documented non-LLM rule."""
        if not history or not is_follow_up(question):
            return question
        if isinstance(generator, Rewriter):
            try:
                return self.check_question(generator.rewrite(question, history))
            except (GeneratorError, InvalidInputError, InputTooLargeError):
                pass
        return standalone_query(question, history)

    def prepare(self, question: str, top_k: int | None = None, *, generator: str | None = None,
                filters: Filters | None = None, mode: RetrievalMode | None = None,
                history: Sequence[Turn] = ()) -> Prepared:
        """Everything before generation: validation, the standalone query, retrieval. Errors in the
        request surface here, before any streamed byte."""
        t0 = time.perf_counter()
        self._refresh()
        index = self.store.current  # one snapshot for the whole request (503 while loading)
        gen = self.generators.get(generator)
        question = self.check_question(question)
        query = self.standalone_query(question, history, gen)
        passages, vector = self._retrieve(index, query, top_k, filters, mode)
        return Prepared(question=question, query=query, query_vector=vector, passages=passages, index=index,
                        generator=gen, started=t0, retrieved=time.perf_counter())

    def _generate(self, p: Prepared, gen: Generator) -> Answer:
        return gen.generate(p.query, p.passages, p.index, query_vector=p.query_vector)

    def ask(self, question: str, top_k: int | None = None, *, generator: str | None = None,
            filters: Filters | None = None, mode: RetrievalMode | None = None,
            history: Sequence[Turn] = ()) -> AskResult:
        p = self.prepare(question, top_k, generator=generator, filters=filters, mode=mode, history=history)
        try:
            answer = self._generate(p, p.generator)
        except GeneratorError as exc:
            fallback = self.generators.fallback_for(p.generator)
            if fallback is None:
                raise
            answer = self._generate(p, fallback)
            answer.fallback = Fallback(from_=p.generator.name, reason=str(exc))
        return p.result(answer)

    async def events(self, p: Prepared) -> AsyncIterator[AnswerEvent]:
        """A prepared request's answer as events: `Retrieved`, `Delta`s as the answer is produced,
        then `Final`; or `Failed` if generation fails after text was sent."""
        yield Retrieved(passages=p.passages, query=p.query)
        answer: Answer | None = None
        sent = False
        gen, note = p.generator, None
        while True:
            try:
                async for piece in gen.astream(p.query, p.passages, p.index, query_vector=p.query_vector):
                    if isinstance(piece, Answer):
                        answer = piece
                    else:
                        sent = True
                        yield Delta(piece)
            except GeneratorError as exc:
                fallback = self.generators.fallback_for(gen)
                if sent or fallback is None:
                    yield Failed(str(exc))
                    return
                answer, note, gen = None, Fallback(from_=gen.name, reason=str(exc)), fallback
                continue
            break
        if answer is None:
            yield Failed(f"generator {gen.name!r} produced no answer")
            return
        if note is not None:
            answer.fallback = note
        yield Final(p.result(answer))
