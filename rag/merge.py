"""Merging segments: several segments' live documents rewritten as one, and when to do it.

A merge reads its inputs (never changes them), copies each live document's chunk rows, sentence
rows and vectors and merges the BM25 postings without tokenizing or embedding again. The tiered
policy (Lucene's idea) keeps the number of segments logarithmic in the corpus: segments of about
the same size (a tier) are merged once there are `factor` of them, so a document is rewritten
about log_factor(corpus) times over its life, and a segment that is mostly deleted is rewritten alone.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from .index import Index, IndexConfig
from .lexical import BM25Index
from .memory import release_free_memory
from .npyfile import write_npy
from .sentence_terms import SentenceTerms, merged as merged_terms
from .segments import Segment
from .vectors import (VectorIndexPolicy, as_ivf, configure, empty_vector_index, finish_vector_index,
                      read_vector_index, write_vector_index)

COPY_BATCH = 65_536  # rows of vectors copied at a time: bounds a merge's memory beyond its output


@dataclass(frozen=True)
class MergePolicy:
    factor: int = 10  # segments of one tier merged together (Lucene's segmentsPerTier)
    floor_chunks: int = 2_000  # segments below this size are all one tier
    max_chunks: int = 5_000_000  # no merge produces a segment larger than this
    deleted_share: float = 0.3  # a segment with this share of its chunks deleted is rewritten

    def tier(self, chunks: int) -> int:
        return 0 if chunks < self.floor_chunks else 1 + int(math.log(chunks / self.floor_chunks, self.factor))

    def pick(self, segments: Sequence[Segment]) -> list[int] | None:
        """Positions of flushed segments to merge next (None: nothing to do)."""
        flushed = [i for i, s in enumerate(segments) if s.name is not None]
        by_tier: dict[int, list[int]] = {}
        for i in flushed:
            by_tier.setdefault(self.tier(segments[i].live_chunks), []).append(i)
        for tier in sorted(by_tier):
            members = sorted(by_tier[tier], key=lambda i: segments[i].live_chunks)
            if len(members) >= self.factor:
                chosen = members[:self.factor]
                if sum(segments[i].live_chunks for i in chosen) <= self.max_chunks:
                    return sorted(chosen)
        for i in flushed:
            seg = segments[i]
            if seg.chunks and 1.0 - seg.live_chunks / seg.chunks >= self.deleted_share:
                return [i]
        return None


def _ranges(column: np.ndarray, n: int) -> np.ndarray:
    return np.searchsorted(np.asarray(column), np.arange(n + 1))


def merge_segments(segments: Sequence[Segment], config: IndexConfig, policy: VectorIndexPolicy, *,
                   sentence_file: Path | None = None) -> Index:
    """One in-memory segment holding the live documents of `segments` (in order). With
    `sentence_file` the sentence vectors and terms, the vector index and the BM25 postings are
    written to its directory as they are made and read back on demand instead of held in memory."""
    if sentence_file is not None:
        # What the process freed before (a bulk build's segments) is not the merge's. Not for a write's
        # in-memory combine (no work directory): on a large heap it costs a write tens of milliseconds.
        release_free_memory()
    documents: list = []
    chunk_doc_row, chunk_bounds, chunk_sentences, sentences = [], [], [], []
    picks = []  # per input: (segment, kept chunk rows, kept sentence rows)
    for seg in segments:
        index = seg.index
        n_docs = len(index.documents)
        c_ranges = _ranges(index.chunk_doc_row, n_docs)
        s_ranges = _ranges(np.asarray(index.sentences[:, 0]) if len(index.sentences) else np.zeros(0, np.int64), n_docs)
        keep_docs = [r for r in range(n_docs) if r not in seg.deleted]
        keep_chunks = np.concatenate([np.arange(c_ranges[r], c_ranges[r + 1]) for r in keep_docs] or
                                     [np.zeros(0, np.int64)]).astype(np.int64)
        keep_sents = np.concatenate([np.arange(s_ranges[r], s_ranges[r + 1]) for r in keep_docs] or
                                    [np.zeros(0, np.int64)]).astype(np.int64)
        # New rows: documents, then chunks and sentences in the same order as the kept ones.
        doc_map = np.full(n_docs, -1, dtype=np.int64)
        doc_map[keep_docs] = len(documents) + np.arange(len(keep_docs))
        sent_map = np.full(len(index.sentences), -1, dtype=np.int64)
        sent_map[keep_sents] = sum(len(s) for s in sentences) + np.arange(len(keep_sents))
        documents.extend(index.documents[r] for r in keep_docs)
        chunk_doc_row.append(doc_map[index.chunk_doc_row[keep_chunks]])
        chunk_bounds.append(np.asarray(index.chunk_bounds[keep_chunks]))
        old_cs = np.asarray(index.chunk_sentences[keep_chunks])
        chunk_sentences.append(np.column_stack([sent_map[old_cs[:, 0]], sent_map[old_cs[:, 0]] + (old_cs[:, 1] - old_cs[:, 0])])
                               if len(old_cs) else np.zeros((0, 2), np.int64))
        old_s = np.asarray(index.sentences[keep_sents]).reshape(-1, 3)
        sentences.append(np.column_stack([doc_map[old_s[:, 0]], old_s[:, 1:]]) if len(old_s) else np.zeros((0, 3), np.int64))
        picks.append((seg, keep_chunks, keep_sents))

    n_chunks = sum(len(c) for _, c, _ in picks)
    n_sents = sum(len(s) for _, _, s in picks)
    dim = config.dimension
    blocks = (seg.index.sentence_vectors[keep_sents[k:k + COPY_BATCH]]
              for seg, _, keep_sents in picks for k in range(0, len(keep_sents), COPY_BATCH))
    if sentence_file is not None:
        sent_vectors = write_npy(sentence_file, (n_sents, dim), np.float16, blocks)
    else:
        sent_vectors = np.concatenate([np.zeros((0, dim), np.float16), *blocks]).astype(np.float16, copy=False)

    def sample(take: int, rng: np.random.Generator) -> np.ndarray:
        rows = np.sort(rng.choice(n_chunks, take, replace=False)) if take < n_chunks else np.arange(n_chunks)
        return _vectors_at(picks, rows, dim)

    largest = max(segments, key=lambda s: s.chunks).index.vectors if segments else None
    vectors = empty_vector_index(n_chunks, dim, policy, largest, sample)
    for seg, keep_chunks, _ in picks:
        source = _readable(seg.index)
        for k in range(0, len(keep_chunks), COPY_BATCH):
            vectors.add(np.ascontiguousarray(source.reconstruct_batch(keep_chunks[k:k + COPY_BATCH]), dtype=np.float32))
        del source
    vectors = finish_vector_index(vectors, policy)
    work = sentence_file.parent if sentence_file is not None else None
    vectors_source = None
    if work is not None:
        # Written now and read back memory-mapped, so the postings merge below does not hold its
        # output beside every vector (1.5 GB at a million chunks); the segment copies the file.
        vectors_source = str(work / "chunks.faiss")
        write_vector_index(vectors, vectors_source)
        del vectors
        release_free_memory()
        vectors = read_vector_index(vectors_source)
        configure(vectors, policy)
    bm25 = BM25Index.merged([(seg.index.bm25, keep) for seg, keep, _ in picks])
    if work is not None:  # likewise: the postings are read on demand and copied by the kernel
        bm25.save(work / "bm25")
        bm25 = BM25Index.load(work / "bm25")
    terms = merged_terms([_terms_of(seg.index, keep_sents) for seg, _, keep_sents in picks], work)
    cat = (lambda parts, cols: np.concatenate(parts).astype(np.int64).reshape(-1, cols) if parts
           else np.zeros((0, cols), np.int64))
    return Index(config=config, documents=documents, chunk_doc_row=cat(chunk_doc_row, 1).reshape(-1),
                 chunk_bounds=cat(chunk_bounds, 2), chunk_sentences=cat(chunk_sentences, 2),
                 sentences=cat(sentences, 3), sentence_vectors=sent_vectors, vectors=vectors, bm25=bm25,
                 vectors_source=vectors_source, sentence_terms=terms)


def _terms_of(index: Index, keep: np.ndarray) -> tuple[SentenceTerms, np.ndarray]:
    """The kept sentences' stored terms; a segment written before terms were stored has its kept
    sentences tokenized now (once: the merged segment stores them)."""
    if index.sentence_terms is not None:
        return index.sentence_terms, keep
    texts, last, text = [], -1, ""
    for d, a, b in np.asarray(index.sentences[keep]).reshape(-1, 3).tolist():  # in document order
        if d != last:
            last, text = d, index.documents[d].text  # each stored text read once
        texts.append(text[a:b])
    return SentenceTerms.of_texts(texts), np.arange(len(keep), dtype=np.int64)


def _vectors_at(picks, rows: np.ndarray, dim: int) -> np.ndarray:
    """Chunk vectors at merged rows (for training an IVF's clusters)."""
    out = np.empty((len(rows), dim), dtype=np.float32)
    start = 0
    for seg, keep_chunks, _ in picks:
        end = start + len(keep_chunks)
        at = np.flatnonzero((rows >= start) & (rows < end))
        if len(at):
            out[at] = _readable(seg.index).reconstruct_batch(keep_chunks[rows[at] - start])
        start = end
    return out


def _readable(index: Index):
    """A segment's vectors to read all of once: a stored IVF is read into memory (one segment's
    worth, let go of after) rather than through its memory mapping, whose every page read would
    stay in the merge's resident memory as long as the segment is open: at a million chunks, every
    input's vectors (1.5 GB) beside the IVF being filled."""
    if index.vectors_source is not None and as_ivf(index.vectors) is not None and os.path.exists(index.vectors_source):
        return read_vector_index(index.vectors_source, mmap=False)
    return index.vectors
