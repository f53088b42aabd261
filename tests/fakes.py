"""A deterministic stand-in embedder for the fast tier: no model is loaded.

Each word (lower-cased) is hashed to a fixed random unit vector; a text's vector is the normalised
sum of its words' vectors. Texts sharing words are close, unrelated texts near-orthogonal: enough
for retrieval, fusion and the write path to behave as they do with the real model, in microseconds.
"""
from __future__ import annotations

import hashlib
import re
from typing import Sequence

import numpy as np

_WORD = re.compile(r"\w+", re.UNICODE)


class HashEmbedder:
    name = "hash-embedder"
    precision = "fp32"

    def __init__(self, dimension: int = 64):
        self._dimension = dimension
        self.calls = 0  # encode/encode_query calls, for tests that count model work

    @property
    def dimension(self) -> int:
        return self._dimension

    def _word(self, word: str) -> np.ndarray:
        seed = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "little")
        v = np.random.default_rng(seed).standard_normal(self._dimension)
        return v / np.linalg.norm(v)

    def _one(self, text: str) -> np.ndarray:
        v = np.zeros(self._dimension)
        for w in _WORD.findall(text.lower()):
            v += self._word(w)
        n = np.linalg.norm(v)
        return (v / n if n else v).astype(np.float32)

    def encode(self, texts: Sequence[str], *, show_progress: bool = False) -> np.ndarray:
        self.calls += 1
        return np.stack([self._one(t) for t in texts]) if texts else np.zeros((0, self._dimension), np.float32)

    def encode_query(self, text: str) -> np.ndarray:
        self.calls += 1
        return self._one(text)
