"""`rag bench-scale`'s corpus: real sentences and their real vectors, drawn into synthetic documents
(see eval/scale.py for why and how), and the stand-in embedder that gives them their pool vectors."""
from __future__ import annotations

import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .measure import BenchError

SEED = 0


@dataclass
class Pool:
    sentences: list[str]
    paragraphs: list[tuple[str, list[int]]]  # (article title, sentence ids in order)
    questions: list[str]


def load_pool(squad: Path) -> Pool:
    from rag.chunking import split_sentences

    from .datasets import DatasetError, load_dataset

    try:
        dataset = load_dataset(squad)
    except DatasetError as exc:
        raise BenchError(str(exc)) from exc
    ids: dict[str, int] = {}
    paragraphs = []
    for doc in dataset.corpus:
        spans = [s for section in split_sentences(doc.text) for s in section]
        paragraphs.append((doc.title, [ids.setdefault(doc.text[s.start:s.end], len(ids)) for s in spans]))
    questions = list(dict.fromkeys(i.question for i in dataset.items))
    random.Random(SEED).shuffle(questions)
    return Pool(sentences=list(ids), paragraphs=paragraphs, questions=questions)


def synthetic_document(pool: Pool, rng: random.Random, number: int):
    from rag.documents import Document

    title = pool.paragraphs[rng.randrange(len(pool.paragraphs))][0]
    paragraphs = []
    for _ in range(rng.randint(6, 12)):
        _, sent_ids = pool.paragraphs[rng.randrange(len(pool.paragraphs))]
        length = min(len(sent_ids), rng.randint(2, 6))
        first = rng.randrange(len(sent_ids) - length + 1)
        paragraphs.append(" ".join(pool.sentences[i] for i in sent_ids[first:first + length]))
    doc_id = f"synthetic-{number:07d}"
    return Document(id=doc_id, source=f"synthetic/{doc_id}.txt", title=title, text="\n\n".join(paragraphs),
                    metadata={"synthetic": True})


class SyntheticCorpus:
    """Documents until about `chunks` chunks, drawn as they are read (the benchmark streams them
    into the ingest: a million chunks' corpus held as Python strings is 1.4 GB of the build's
    memory). Chunks per character is measured on 100 documents drawn apart; documents are drawn
    until the corpus holds enough characters. Each pass draws the same documents."""

    def __init__(self, pool: Pool, chunks: int, chunk_size: int, overlap: int):
        from rag.chunking import ChunkingConfig, chunk_document

        self.pool, self.chunks = pool, chunks
        probe_rng = random.Random(SEED + 1)
        probe = [synthetic_document(pool, probe_rng, i) for i in range(100)]
        config = ChunkingConfig(chunk_size, overlap)
        self.per_char = sum(len(chunk_document(d, config)) for d in probe) / sum(len(d.text) for d in probe)
        self.expected_chars = int(chunks / self.per_char) + 1
        self.documents = self.characters = 0  # drawn so far in the current (or last) pass
        self.seconds = 0.0  # spent drawing them

    def __iter__(self):
        rng = random.Random(SEED)
        self.documents = self.characters = 0
        self.seconds = 0.0
        while self.characters * self.per_char < self.chunks:
            t0 = time.perf_counter()
            doc = synthetic_document(self.pool, rng, self.documents)
            self.seconds += time.perf_counter() - t0
            self.documents += 1
            self.characters += len(doc.text)
            yield doc


def synthetic_corpus(pool: Pool, chunks: int, chunk_size: int, overlap: int) -> list:
    """`SyntheticCorpus`'s documents as a list."""
    return list(SyntheticCorpus(pool, chunks, chunk_size, overlap))


class PoolEmbedder:
    """The `Embedder` protocol from pool vectors (see the module docstring); used at ingest only."""

    def __init__(self, real, pool_texts: Sequence[str], pool_vectors: np.ndarray):
        self.real = real
        self.name = real.name
        self._row = {t: i for i, t in enumerate(pool_texts)}
        self._vectors = pool_vectors
        self._real_cache: dict[str, np.ndarray] = {}  # pieces not in the pool, embedded for real once
        self.embedded_for_real = 0
        self.seconds = 0.0  # time spent in encode: the stand-in's own cost, not the index's

    @property
    def dimension(self) -> int:
        return self.real.dimension

    @property
    def precision(self) -> str:
        return self.real.precision

    def encode(self, texts: Sequence[str], *, show_progress: bool = False) -> np.ndarray:
        from rag.chunking import split_sentences

        started = time.perf_counter()
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        unknown: dict[str, list[tuple[int, int]]] = {}  # text -> (output row, share index)
        shares: list[list[np.ndarray]] = [[] for _ in texts]
        for i, text in enumerate(texts):
            row = self._row.get(text)
            if row is not None:
                out[i] = self._vectors[row]
                continue
            for section in split_sentences(text):
                for s in section:
                    piece = text[s.start:s.end]
                    row = self._row.get(piece)
                    if row is None and piece in self._real_cache:
                        shares[i].append(self._real_cache[piece])
                    elif row is None:
                        unknown.setdefault(piece, []).append((i, len(shares[i])))
                        shares[i].append(None)
                    else:
                        shares[i].append(self._vectors[row])
        if unknown:
            pieces = list(unknown)
            self.embedded_for_real += len(pieces)
            for piece, vec in zip(pieces, self.real.encode(pieces)):
                self._real_cache[piece] = vec
                for i, k in unknown[piece]:
                    shares[i][k] = vec
        for i, parts in enumerate(shares):
            if parts:
                v = np.mean(parts, axis=0)
                out[i] = v / max(float(np.linalg.norm(v)), 1e-12)
        self.seconds += time.perf_counter() - started
        return out

    def encode_query(self, text: str) -> np.ndarray:
        return self.real.encode_query(text)


def pool_vectors(real, pool: Pool, cache: Path, say: Callable[[str], None]) -> np.ndarray:
    """The pool's vectors, embedded once and cached beside the work directory's index."""
    import hashlib

    key = hashlib.sha256("\n".join(pool.sentences).encode() + real.name.encode()).hexdigest()[:16]
    path = cache / f"pool-{key}.npy"
    if path.exists():
        return np.load(path)
    say(f"embedding the pool: {len(pool.sentences)} sentences")
    from rag.embedding import batch_threads

    t0 = time.perf_counter()
    with batch_threads():
        vectors = real.encode(pool.sentences)
    say(f"pool embedded in {time.perf_counter() - t0:.1f} s")
    cache.mkdir(parents=True, exist_ok=True)
    np.save(path, vectors)
    return vectors
