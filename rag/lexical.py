"""BM25 over chunks with bm25s (English stop words, Snowball stemming)."""
from __future__ import annotations

import json
import re
import threading
from collections import Counter
from functools import lru_cache
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


_TOKEN = re.compile(r"(?u)\b\w\w+\b")  # bm25s's token pattern


@lru_cache(maxsize=1)
def _stopwords() -> frozenset[str]:
    from bm25s.stopwords import STOPWORDS_EN_PLUS

    return frozenset(STOPWORDS_EN_PLUS)


def tokenize(texts: Sequence[str]) -> list[list[str]]:
    """Lower-cased Snowball stems without stop words. bm25s's larger English list ("en_plus", which
    also drops question words such as "what" and "did") beat its 33-word Lucene list on SQuAD:
    BM25 hit@1 0.782 vs 0.768. The same tokens as `bm25s.tokenize(..., stopwords="en_plus")`
    (tested), without its per-call progress bars and vocabulary: on the query path that was half
    the cost of an answer (three calls per question)."""
    stop, stem = _stopwords(), _stemmer().stemWords
    out = []
    for text in texts:
        words = [w for w in _TOKEN.findall(text.lower()) if w not in stop]
        out.append(stem(words) if words else [])
    return out


@lru_cache(maxsize=65536)
def _text_tokens(text: str) -> tuple[str, ...]:
    return tuple(tokenize([text])[0])


def tokenize_cached(texts: Sequence[str]) -> list[tuple[str, ...]]:
    """`tokenize` for texts seen again and again (the sentences of an index that answers are drawn
    from): each text is tokenized once per process, within a bounded cache."""
    return [_text_tokens(t) for t in texts]


class BM25Index:
    """Scores every chunk for a query; rows line up with the chunk store."""

    def __init__(self, model, size: int, text_df: dict[str, int], postings: tuple | None = None):
        self._model = model
        self.size = size
        self._text_df = text_df  # document frequency over chunk text alone (no titles)
        # (scores, chunk rows) per term, CSC-ordered: the model's arrays, or the stored files read
        # on demand (see npyfile.py) when loaded.
        self._postings = postings or ((model.scores["data"], model.scores["indices"]) if model else None)

    @classmethod
    def build(cls, texts: Sequence[str], titles: Sequence[str] | None = None, *, k1: float = 0.9, b: float = 0.4,
              method: str = "lucene") -> "BM25Index":
        """Index `texts`, each with its title's words in front when `titles` is given (a title field
        helped on SQuAD). k1=0.9, b=0.4 (Anserini's defaults) beat 1.5/0.75 and 1.2/0.75 there."""
        import bm25s

        model = bm25s.BM25(k1=k1, b=b, method=method)
        tokens = tokenize(texts)
        text_df = Counter(t for toks in tokens for t in set(toks))
        if titles is not None:
            title_tokens = dict(zip(set(titles), tokenize(list(set(titles)))))
            tokens = [title_tokens[title] + toks for title, toks in zip(titles, tokens)]
        # bm25s cannot index an empty corpus or a corpus without any token; keep a placeholder token.
        tokens = [t if t else ["\u2205"] for t in tokens]
        if not tokens:  # an empty corpus is a normal state (the last document was deleted)
            return cls(None, 0, {})
        model.index(tokens, show_progress=False)
        return cls(model, len(tokens), dict(text_df))

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of every chunk for `query` (zeros when the query has no indexable word)."""
        if self.size == 0:
            return np.zeros(0, dtype=np.float32)
        tokens = tokenize([query])[0]
        if not tokens:
            return np.zeros(self.size, dtype=np.float32)
        return self._sum_postings(self._model.get_tokens_ids(tokens))

    def _sum_postings(self, token_ids: list[int]) -> np.ndarray:
        """What bm25s's get_scores computes, a sum of precomputed per-term scores, by fancy-index
        addition: a term lists each chunk once, so no np.add.at is needed (its unbuffered addition
        made a query over a million chunks several times slower). A repeated query term counts
        twice, as in bm25s."""
        data, indices = self._postings
        indptr = self._model.scores["indptr"]
        out = np.zeros(self.size, dtype=np.float32)
        for t in token_ids:
            a, b = int(indptr[t]), int(indptr[t + 1])
            out[indices[a:b]] += data[a:b]
        if self._model.nonoccurrence_array is not None:  # BM25L/BM25+ (not the default lucene)
            out += self._model.nonoccurrence_array[token_ids].sum()
        return out

    def idf(self, terms) -> dict[str, float]:
        """Inverse document frequency of each (already tokenized) term over chunk text without titles
        (a title repeated in every chunk of a document would make its words look common)."""
        n = max(self.size, 1)
        return {t: float(np.log(1.0 + (n - (df := self._text_df.get(t, 0)) + 0.5) / (df + 0.5))) for t in terms}

    def scored_idf(self, terms) -> dict[str, float]:
        """Inverse document frequency as the BM25 scores use it: over what was indexed, titles
        included. Comparing a score with an ideal one needs the same IDF on both sides: with every
        chunk of a one-document corpus carrying its title, title words score near zero."""
        n = max(self.size, 1)
        if self._model is None:
            return {t: 0.0 for t in terms}
        vocab, indptr = self._model.vocab_dict, self._model.scores["indptr"]
        out = {}
        for t in terms:
            tid = vocab.get(t)
            df = int(indptr[tid + 1] - indptr[tid]) if tid is not None else 0
            out[t] = float(np.log(1.0 + (n - df + 0.5) / (df + 0.5)))
        return out

    def document_frequency(self, term: str) -> int:
        """Chunks whose text (titles aside) contains the (already tokenized) term."""
        return self._text_df.get(term, 0)

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        if self.size:
            self._model.save(str(directory), show_progress=False)
        (directory / "size.txt").write_text(str(self.size))
        (directory / "text_df.json").write_text(json.dumps(self._text_df, ensure_ascii=False))

    @classmethod
    def load(cls, directory: Path) -> "BM25Index":
        import bm25s

        size = int((directory / "size.txt").read_text())
        # Memory-mapped (bm25s's own arrays are never read at query time: postings are read on demand
        # from the same files, which at a million chunks hold ~550 MB of which a query reads a few lists).
        model = bm25s.BM25.load(str(directory), mmap=True, show_progress=False) if size else None
        postings = None
        if model is not None:
            from .npyfile import NpyFile

            postings = (NpyFile(directory / "data.csc.index.npy"), NpyFile(directory / "indices.csc.index.npy"))
            indexed = int(model.scores["num_docs"])
            if indexed != size:
                from .errors import IndexCorruptError

                raise IndexCorruptError(f"BM25 index holds {indexed} chunks but its size file says {size}")
        text_df = json.loads((directory / "text_df.json").read_text(encoding="utf-8"))
        return cls(model, size, text_df, postings)
