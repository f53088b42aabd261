"""Building a segment: chunk, embed and index documents into a new `Index`."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from .chunking import ChunkingConfig, chunk_document, split_sentences
from .documents import Document
from .embedding import Embedder
from .index import Index, IndexConfig
from .lexical import BM25Index
from .sentence_terms import SentenceTerms
from .vectors import VectorIndexPolicy, build_vector_index


@dataclass
class _Plan:
    """What a new segment holds, row by row, before any embedding: the texts to embed."""

    chunk_doc_row: list[int]
    chunk_bounds: list[tuple[int, int]]
    chunk_sentences: list[tuple[int, int]]
    sentences: list[tuple[int, int, int]]
    new_chunks: list[tuple[int, str]]  # (row, text) to embed
    new_sentences: list[tuple[int, str]]


def _plan(documents: Sequence[Document], chunking: ChunkingConfig) -> _Plan:
    plan = _Plan([], [], [], [], [], [])
    for row, doc in enumerate(documents):
        sent_index: dict[tuple[int, int], int] = {}
        sections = split_sentences(doc.text, chunking.size)
        for section in sections:
            for span in section:
                sent_index[(span.start, span.end)] = len(plan.sentences)
                plan.new_sentences.append((len(plan.sentences), doc.text[span.start:span.end]))
                plan.sentences.append((row, span.start, span.end))
        for c in chunk_document(doc, chunking, sections):
            first = sent_index[(c.sentences[0].start, c.sentences[0].end)]
            plan.new_chunks.append((len(plan.chunk_doc_row), c.text))
            plan.chunk_doc_row.append(row)
            plan.chunk_bounds.append((c.start, c.end))
            plan.chunk_sentences.append((first, first + len(c.sentences)))
    return plan


def texts_to_embed(documents: Sequence[Document], config: IndexConfig) -> tuple[list[str], list[str]]:
    """The chunk texts and sentence texts `build_index` embeds for `documents` (in its order), so
    that they can be embedded elsewhere (another machine) and handed back through an embedder that
    looks them up."""
    plan = _plan(documents, ChunkingConfig(config.chunk_size, config.chunk_overlap))
    return [t for _, t in plan.new_chunks], [t for _, t in plan.new_sentences]


EMBED_BATCH = 1024  # texts per encode call at ingest: large enough that the model's own batching dominates


def build_index(documents: Sequence[Document], embedder: Embedder, config: IndexConfig, *,
                progress: Callable[[int, int], None] | None = None,
                policy: VectorIndexPolicy = VectorIndexPolicy(), journal_seq: int = 0) -> Index:
    """Chunk and embed `documents` into a new segment: chunk texts first, then sentences, in large
    batches. (Unchanged documents are never rebuilt: they stay in their segments.) `journal_seq` is
    the last journal change the segment contains."""
    plan = _plan(documents, ChunkingConfig(config.chunk_size, config.chunk_overlap))
    dim = config.dimension
    chunk_matrix = np.zeros((len(plan.chunk_doc_row), dim), dtype=np.float32)
    sent_matrix = np.zeros((len(plan.sentences), dim), dtype=np.float16)
    total = len(plan.new_chunks) + len(plan.new_sentences)
    done = 0
    if progress:
        progress(0, total)
    for items, target in ((plan.new_chunks, chunk_matrix), (plan.new_sentences, sent_matrix)):
        for k in range(0, len(items), EMBED_BATCH):
            part = items[k:k + EMBED_BATCH]
            target[[i for i, _ in part]] = embedder.encode([t for _, t in part])
            done += len(part)
            if progress:
                progress(done, total)

    titles = {d.id: d.title for d in documents}
    doc_ids = [d.id for d in documents]
    bm25 = BM25Index.build([documents[r].text[a:b] for r, (a, b) in zip(plan.chunk_doc_row, plan.chunk_bounds)],
                           [titles[doc_ids[r]] for r in plan.chunk_doc_row] if config.index_titles else None)
    vectors = build_vector_index(chunk_matrix, policy)
    terms = SentenceTerms.of_texts([documents[r].text[a:b] for r, a, b in plan.sentences])
    return Index(config=config, documents=list(documents),
                 chunk_doc_row=np.asarray(plan.chunk_doc_row, dtype=np.int64),
                 chunk_bounds=np.asarray(plan.chunk_bounds, dtype=np.int64).reshape(-1, 2),
                 chunk_sentences=np.asarray(plan.chunk_sentences, dtype=np.int64).reshape(-1, 2),
                 sentences=np.asarray(plan.sentences, dtype=np.int64).reshape(-1, 3),
                 sentence_vectors=sent_matrix, vectors=vectors, bm25=bm25, journal_seq=journal_seq,
                 sentence_terms=terms)
