"""The one place where settings choose the swappable parts by name: embedder, generators,
retriever (and its fusion strategy), and the index builder that ties embedder and chunking."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Callable, Sequence

from .abstention import THRESHOLD_VERSION
from .build import build_index
from .chunking import SENTENCE_SPLITTER
from .config import Settings
from .documents import Document
from .embedding import Embedder, SentenceTransformerEmbedder
from .errors import UnknownGeneratorError
from .generation import Generator
from .generation.extractive import ExtractiveConfig, ExtractiveGenerator
from .generation.openai_chat import OpenAIChatGenerator, OpenAIConfig
from .index import Index, IndexConfig
from .retrieval import Retriever
from .vectors import VectorIndexPolicy

FALLBACK_GENERATOR = ExtractiveGenerator.name  # offline, cannot fail: answers when an LLM does not


def make_embedder(settings: Settings) -> Embedder:
    s = settings
    return SentenceTransformerEmbedder(s.embed_model, backend=s.embed_backend, batch_size=s.embed_batch_size,
                                       threads=s.embed_threads, cache_dir=s.data_dir / "models")


def make_retriever(settings: Settings, embedder: Embedder) -> Retriever:
    s = settings
    return Retriever(embedder, mode=s.retrieval_mode, fusion=s.fusion, dense_weight=s.dense_weight,
                     sentence_weight=s.sentence_weight,
                     match_weight=s.match_weight, rrf_k=s.rrf_k, candidates=s.candidates)


def index_config(settings: Settings, embedder: Embedder) -> IndexConfig:
    s = settings
    return IndexConfig(embed_model=s.embed_model, dimension=embedder.dimension, embed_precision=embedder.precision,
                       chunk_size=s.chunk_size, chunk_overlap=s.chunk_overlap, index_titles=s.index_titles,
                       sentence_splitter=SENTENCE_SPLITTER)


@dataclass
class Builder:
    """Builds indexes with one embedder, chunking and vector index policy (the store's `IndexBuilder`)."""

    embedder: Embedder
    config: IndexConfig
    policy: VectorIndexPolicy

    def __call__(self, documents: Sequence[Document], *, journal_seq: int,
                 progress: Callable[[int, int], None] | None = None) -> Index:
        return build_index(documents, self.embedder, self.config, progress=progress, policy=self.policy,
                           journal_seq=journal_seq)


def release(service, embedder, *, owns_embedder: bool) -> None:
    """Close what a pipeline made: its service's generators (their HTTP clients) and, when the
    pipeline loaded it, the model (its sessions and threads)."""
    if service is not None:
        service.generators.close()
    if owns_embedder and embedder is not None:
        close = getattr(embedder, "close", None)
        if close is not None:
            close()


class Generators:
    """The generators a service offers, by name, with the default and the fallback."""

    def __init__(self, generators: Sequence[Generator], *, default: str, fallback: str | None):
        self._by_name = {g.name: g for g in generators}
        self.default = self.get(default)
        self.fallback = self.get(fallback) if fallback else None

    @property
    def names(self) -> list[str]:
        return list(self._by_name)

    def get(self, name: str | None) -> Generator:
        if name is None:
            return self.default
        try:
            return self._by_name[name]
        except KeyError:
            raise UnknownGeneratorError(name, self.names) from None

    def fallback_for(self, generator: Generator) -> Generator | None:
        """Who answers when `generator` fails: the fallback, unless it is the one that failed."""
        return None if generator is self.fallback else self.fallback

    def close(self) -> None:
        for g in self._by_name.values():
            g.close()


def make_generators(settings: Settings, embedder: Embedder, retriever: Retriever | None = None) -> Generators:
    """The generators; with `retriever`, the extractive one calibrates its abstention threshold against
    the corpus (pseudo-questions asked through it, rag/abstention.py)."""
    s = settings
    config = ExtractiveConfig(
        abstain_threshold=s.abstain_threshold, max_sentences=s.answer_max_sentences, max_words=s.answer_max_words,
        null_quantile=s.abstain_null_quantile, null_top_k=s.top_k)
    # The corpus' threshold is kept beside the index with everything it depends on, so a changed
    # setting (or model) computes it again rather than reading one made for other answers.
    key = json.dumps({"version": THRESHOLD_VERSION, "model": s.embed_model, "chunking": [s.chunk_size, s.chunk_overlap],
                      "answers": asdict(config), "retriever": None if retriever is None else {
                          k: str(v) for k, v in vars(retriever).items() if k != "embedder"}}, sort_keys=True)
    extractive = ExtractiveGenerator(embedder, config, retriever=retriever,
                                     threshold_file=s.index_dir / "abstention.json", threshold_key=key)
    llm = OpenAIChatGenerator(OpenAIConfig(
        base_url=s.openai_base_url, model=s.openai_model, api_key=s.openai_api_key, timeout_s=s.openai_timeout_s,
        connect_timeout_s=s.openai_connect_timeout_s, max_retries=s.openai_max_retries,
        breaker_threshold=s.openai_breaker_threshold, breaker_cooldown_s=s.openai_breaker_cooldown_s))
    return Generators([extractive, llm], default=s.generator,
                      fallback=FALLBACK_GENERATOR if s.openai_fallback else None)
