"""BM25 over chunks with bm25s (English stop words, Snowball stemming)."""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Sequence

import numpy as np

_STEMMER_LOCAL = threading.local()


def _stemmer():
    # PyStemmer objects are not thread-safe; one per thread.
    stemmer = getattr(_STEMMER_LOCAL, "stemmer", None)
    if stemmer is None:
        import Stemmer

        stemmer = _STEMMER_LOCAL.stemmer = Stemmer.Stemmer("english")
    return stemmer


def tokenize(texts: Sequence[str]) -> list[list[str]]:
    import bm25s

    return bm25s.tokenize(list(texts), lower=True, stopwords="en", stemmer=_stemmer(),
                          return_ids=False, show_progress=False)


class BM25Index:
    """Scores every chunk for a query; rows line up with the chunk store."""

    def __init__(self, model, size: int):
        self._model = model
        self.size = size

    @classmethod
    def build(cls, texts: Sequence[str], *, k1: float = 1.2, b: float = 0.75, method: str = "lucene") -> "BM25Index":
        import bm25s

        model = bm25s.BM25(k1=k1, b=b, method=method)
        tokens = tokenize(texts)
        # bm25s cannot index an empty corpus or a corpus without any token; keep a placeholder token.
        tokens = [t if t else ["\u2205"] for t in tokens]
        if tokens:
            model.index(tokens, show_progress=False)
        return cls(model, len(tokens))

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of every chunk for `query` (zeros when the query has no indexable word)."""
        if self.size == 0:
            return np.zeros(0, dtype=np.float32)
        tokens = tokenize([query])[0]
        if not tokens:
            return np.zeros(self.size, dtype=np.float32)
        return np.asarray(self._model.get_scores(tokens), dtype=np.float32)

    def idf(self, terms) -> dict[str, float]:
        """Inverse document frequency of each (already tokenized) term; unseen terms get the maximum."""
        n = max(self.size, 1)
        out = {}
        vocab = self._model.vocab_dict if self._model is not None else {}
        indptr = self._model.scores["indptr"] if self._model is not None else None
        for t in terms:
            i = vocab.get(t)
            df = int(indptr[i + 1] - indptr[i]) if i is not None else 0
            out[t] = float(np.log(1.0 + (n - df + 0.5) / (df + 0.5)))
        return out

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        if self.size:
            self._model.save(str(directory), show_progress=False)
        (directory / "size.txt").write_text(str(self.size))

    @classmethod
    def load(cls, directory: Path) -> "BM25Index":
        import bm25s

        size = int((directory / "size.txt").read_text())
        model = bm25s.BM25.load(str(directory), show_progress=False) if size else None
        if model is not None:
            indexed = int(model.scores["num_docs"])
            if indexed != size:
                from .errors import IndexCorruptError

                raise IndexCorruptError(f"BM25 index holds {indexed} chunks but its size file says {size}")
        return cls(model, size)
