"""Each sentence's terms, stored at ingest: a question's lexical match with its ~1,500 candidate
sentences (retrieval's best-sentence signal) becomes array work instead of tokenizing their text.

A segment stores, per sentence, the `lexical.tokenize` tokens of its text in order, each as a stable
64-bit hash (BLAKE2b of the token), in CSR form: `indptr` (n_sentences + 1) and `hashes`. Hashes
rather than ids of a vocabulary: segments merge by concatenation, with no vocabulary to remap, and a
query hashes its few terms the same way. Two different tokens share a hash with probability ~2^-64
per pair. `VERSION` names the tokenization; a segment written with another (or none) has its
sentences tokenized when read, as before.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from .lexical import tokenize
from .npyfile import NpyFile, save_npy, write_npy

VERSION = 1  # bump when lexical.tokenize changes what it returns
INDPTR, HASHES = "sentence_terms.indptr.npy", "sentence_terms.hashes.npy"


@lru_cache(maxsize=1 << 18)
def term_hash(token: str) -> int:
    return int.from_bytes(hashlib.blake2b(token.encode("utf-8"), digest_size=8).digest(), "little", signed=True)


def hashes_of(tokens: Iterable[str]) -> np.ndarray:
    return np.fromiter((term_hash(t) for t in tokens), dtype=np.int64)


@dataclass(frozen=True, eq=False)
class SentenceTerms:
    indptr: np.ndarray | NpyFile  # int64 (n + 1,): sentence i's hashes are hashes[indptr[i]:indptr[i + 1]]
    hashes: np.ndarray | NpyFile  # int64

    def __len__(self) -> int:
        return len(self.indptr) - 1

    @classmethod
    def of_texts(cls, texts: Sequence[str]) -> "SentenceTerms":
        lists = tokenize(texts)
        indptr = np.zeros(len(lists) + 1, dtype=np.int64)
        np.cumsum([len(t) for t in lists], out=indptr[1:])
        return cls(indptr, hashes_of(t for tokens in lists for t in tokens))

    def read(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(hashes, owner): the terms of sentences `rows`, concatenated in order, and for each the
        position in `rows` of the sentence it belongs to. Runs of consecutive rows (a chunk's
        sentences) are read at once."""
        rows = np.asarray(rows, dtype=np.int64)
        if not len(rows):
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        starts = np.asarray(self.indptr[rows], dtype=np.int64)
        ends = np.asarray(self.indptr[rows + 1], dtype=np.int64)
        lengths = ends - starts
        owner = np.repeat(np.arange(len(rows)), lengths)
        breaks = np.flatnonzero(starts[1:] != ends[:-1]) + 1  # where the next sentence is not adjacent
        bounds = np.concatenate(([0], breaks, [len(rows)]))
        pieces = [np.asarray(self.hashes[int(starts[a]):int(ends[b - 1])], dtype=np.int64)
                  for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist())]
        return (np.concatenate(pieces) if pieces else np.zeros(0, np.int64)), owner

    def save(self, directory: Path) -> None:
        save_npy(directory / INDPTR, self.indptr, np.int64)
        save_npy(directory / HASHES, self.hashes, np.int64)

    @classmethod
    def load(cls, directory: Path, version: int | None, sentences: int) -> "SentenceTerms | None":
        """The stored terms (hashes read on demand); None when the segment has none of this version."""
        if version != VERSION or not (directory / INDPTR).is_file():
            return None
        # The offsets in memory (8 bytes a sentence: 35 MB at a million chunks), so a question's
        # ~150 runs of candidate sentences cost one read each, not three.
        terms = cls(np.load(directory / INDPTR), NpyFile(directory / HASHES))
        if len(terms.indptr) != sentences + 1:
            raise ValueError(f"{INDPTR} holds {len(terms.indptr) - 1} sentences, not {sentences}")
        return terms


def merged(parts: Sequence[tuple[SentenceTerms, np.ndarray]], out: Path | None = None) -> SentenceTerms:
    """The terms of the kept sentence rows of each part, in order (a merge). With `out` (a
    directory) the hashes are written to a file there and read on demand, so a large merge holds
    none in memory."""
    counts = []
    for terms, keep in parts:
        keep = np.asarray(keep, dtype=np.int64)
        counts.append(np.asarray(terms.indptr[keep + 1], dtype=np.int64) - np.asarray(terms.indptr[keep], dtype=np.int64)
                      if len(keep) else np.zeros(0, np.int64))
    indptr = np.zeros(sum(len(c) for c in counts) + 1, dtype=np.int64)
    if len(indptr) > 1:
        np.cumsum(np.concatenate(counts), out=indptr[1:])
    blocks = (terms.read(np.asarray(keep[k:k + 65_536], dtype=np.int64))[0]
              for terms, keep in parts for k in range(0, len(keep), 65_536))
    if out is not None:
        return SentenceTerms(indptr, write_npy(out / HASHES, (int(indptr[-1]),), np.int64, blocks))
    return SentenceTerms(indptr, np.concatenate([np.zeros(0, np.int64), *blocks]))
