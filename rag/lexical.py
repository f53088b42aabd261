"""BM25 over chunks (English stop words, Snowball stemming), in postings that keep term frequencies.

bm25s stores each posting's final score, computed with its own corpus' IDF and average length; an
index made of segments needs scores as if it were one index (global document frequencies, chunk
count and average length over the live chunks of every segment), and so does a cluster of shards.
So a segment stores term frequencies (CSC: per term, the chunk rows and counts) and chunk lengths,
and a query is scored with `CorpusStats` summed over the parts it searches. The formula is bm25s's
"lucene" variant (Kamphuis et al. 2020); tests check the scores against bm25s's on one segment.
"""
from __future__ import annotations

import json
import math
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Mapping, Sequence

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
    """bm25s's list, from its module alone (plain tuples): importing the package imports scipy, half a
    second of a server's first question, for a word list."""
    import importlib.util

    location = importlib.util.find_spec("bm25s").submodule_search_locations[0]
    spec = importlib.util.spec_from_file_location("rag_bm25s_stopwords", f"{location}/stopwords.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return frozenset(module.STOPWORDS_EN_PLUS)


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


K1, B = 0.9, 0.4  # Anserini's defaults: beat 1.5/0.75 and 1.2/0.75 on SQuAD
EMPTY = "\u2205"  # the token of a chunk without any: every chunk has a length of at least 1


def _idf(chunks: int, df: int) -> float:
    return math.log(1.0 + (chunks - df + 0.5) / (df + 0.5))


@dataclass(frozen=True)
class CorpusStats:
    """What scoring one query needs to know about the whole corpus: how many live chunks, their
    total length, and per query term how many live chunks hold it (titles included: `df`) and
    hold it in their text (titles aside: `text_df`). The stats of disjoint parts add up, so the
    segments of an index, or the shards of a cluster, score as one index would."""

    chunks: int = 0
    length: float = 0.0
    df: Mapping[str, int] = field(default_factory=dict)
    text_df: Mapping[str, int] = field(default_factory=dict)

    def __add__(self, other: "CorpusStats") -> "CorpusStats":
        return CorpusStats(self.chunks + other.chunks, self.length + other.length,
                           {t: self.df.get(t, 0) + other.df.get(t, 0) for t in self.df.keys() | other.df.keys()},
                           {t: self.text_df.get(t, 0) + other.text_df.get(t, 0)
                            for t in self.text_df.keys() | other.text_df.keys()})

    def __radd__(self, other):  # sum() starts from 0
        return self if other == 0 else NotImplemented

    @property
    def average_length(self) -> float:
        return self.length / self.chunks if self.chunks else 1.0

    def idf(self, df: int) -> float:
        """Lucene's IDF over these chunks (as bm25s computes it)."""
        return _idf(max(self.chunks, 1), df)


class BM25Index:
    """One segment's postings: for each term (CSC order) the chunk rows that hold it, how often
    (title and text) and whether in the text; and each chunk's length in tokens. Immutable; deleted
    chunks are masked by the caller (`live`)."""

    def __init__(self, vocab: dict[str, int], indptr: np.ndarray, rows, tf, in_text, lengths: np.ndarray,
                 text_df: np.ndarray):
        self.vocab = vocab
        self.indptr = indptr  # int64 (terms + 1)
        self.rows = rows  # int32 (postings): array, or NpyFile read on demand when loaded
        self.tf = tf  # float32 (postings)
        self.in_text = in_text  # bool (postings): the term is in the chunk's text, not only its title
        self.lengths = lengths  # float32 (chunks)
        self.text_df = text_df  # int32 (terms): chunks holding the term in their text
        self.size = len(lengths)
        self._view: BM25View | None = None
        # Long postings lists' saturated term frequencies, by (term, average length): common terms come
        # back question after question, and computing these was most of a query's BM25 at a million chunks.
        self._saturated: OrderedDict[tuple[int, float], tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._saturated_bytes = 0
        self._saturated_lock = threading.Lock()

    # -- building ------------------------------------------------------------------------
    @classmethod
    def build(cls, texts: Sequence[str], titles: Sequence[str] | None = None) -> "BM25Index":
        """Index `texts`, each with its title's words in front when `titles` is given (a title field
        helped on SQuAD)."""
        text_tokens = tokenize(texts)
        title_tokens = dict(zip(set(titles), tokenize(list(set(titles))))) if titles is not None else {}
        vocab: dict[str, int] = {}
        full_ids: list[int] = []
        full_rows: list[int] = []
        text_keys: list[int] = []
        text_rows: list[int] = []
        lengths = np.zeros(len(text_tokens), dtype=np.float32)
        for row, toks in enumerate(text_tokens):
            ids = [vocab.setdefault(t, len(vocab)) for t in toks]
            text_keys.extend(ids)
            text_rows.extend([row] * len(ids))
            full = [vocab.setdefault(t, len(vocab)) for t in title_tokens.get(titles[row], ())] + ids \
                if titles is not None else ids
            if not full:
                full = [vocab.setdefault(EMPTY, len(vocab))]
            lengths[row] = len(full)
            full_ids.extend(full)
            full_rows.extend([row] * len(full))
        n = max(len(text_tokens), 1)
        keys = np.asarray(full_ids, dtype=np.int64) * n + np.asarray(full_rows, dtype=np.int64)
        in_text_keys = np.unique(np.asarray(text_keys, dtype=np.int64) * n + np.asarray(text_rows, dtype=np.int64))
        return cls._from_keys(vocab, keys, n, lengths, in_text_keys=in_text_keys)

    @classmethod
    def _from_keys(cls, vocab: dict[str, int], keys: np.ndarray, n: int, lengths: np.ndarray, *,
                   in_text_keys: np.ndarray) -> "BM25Index":
        """Postings from (term * n + row) keys, one per token, counted into term frequencies."""
        unique, counts = np.unique(keys, return_counts=True)
        tf = counts.astype(np.float32)
        pos = np.minimum(np.searchsorted(in_text_keys, unique), max(len(in_text_keys) - 1, 0))
        in_text = in_text_keys[pos] == unique if len(in_text_keys) else np.zeros(len(unique), dtype=bool)
        # Term boundaries straight from the sorted keys.
        indptr = np.searchsorted(unique, np.arange(len(vocab) + 1, dtype=np.int64) * n).astype(np.int64)
        rows = (unique % n).astype(np.int32)
        running = np.concatenate(([0], np.cumsum(in_text, dtype=np.int64)))
        text_df = running[indptr[1:]] - running[indptr[:-1]]
        del running
        return cls(vocab, indptr, rows, tf.astype(np.float32), in_text, lengths, text_df.astype(np.int32))

    @classmethod
    def merged(cls, parts: Sequence[tuple["BM25Index", np.ndarray]]) -> "BM25Index":
        """One segment's postings from the given rows of others (in that order), without tokenizing
        again: term ids are mapped onto a common vocabulary and rows renumbered. A counting merge:
        each part's postings are already grouped by term (and in row order within a term), and parts
        come in row order, so each term's merged list is its blocks from the parts one after another.
        The per-term counts place every part's block, and each part is copied straight to its place:
        beside the output, a merge at a million chunks (~7*10^7 postings) holds one part's temporaries,
        not a sort of every posting (nor any other array as long as all postings but the output)."""
        vocab: dict[str, int] = {}
        prepared = []  # per part: (its term ids -> merged term ids, its rows kept)
        for part, keep in parts:
            keep = np.asarray(keep, dtype=np.int64)
            term_map = np.fromiter((vocab.setdefault(t, len(vocab)) for t in part.terms()), dtype=np.int64,
                                   count=len(part.vocab))
            prepared.append((term_map, keep))
        counts = np.zeros(len(vocab), dtype=np.int64)
        kept_counts = []
        for (part, _), (term_map, keep) in zip(parts, prepared):
            alive = np.zeros(part.size, dtype=bool)
            alive[keep] = True
            running = np.concatenate(([0], np.cumsum(alive[np.asarray(part.rows[:])], dtype=np.int64)))
            per_term = running[part.indptr[1:]] - running[part.indptr[:-1]]
            del running
            counts[term_map] += per_term  # a part's terms are distinct: no repeated index
            kept_counts.append(per_term)
        indptr = np.concatenate(([0], np.cumsum(counts))).astype(np.int64)
        total = int(indptr[-1])
        rows_all = np.empty(total, dtype=np.int32)
        tf_all = np.empty(total, dtype=np.float32)
        in_text_all = np.empty(total, dtype=bool)
        text_df = np.zeros(len(vocab), dtype=np.int64)
        fill = indptr[:-1].copy()  # where each term's next block goes
        lengths, offset = [], 0
        for (part, _), (term_map, keep), per_term in zip(parts, prepared, kept_counts):
            new_row = np.full(part.size, -1, dtype=np.int32)
            new_row[keep] = offset + np.arange(len(keep), dtype=np.int32)
            part_rows = new_row[np.asarray(part.rows[:])]
            kept = part_rows >= 0
            # The k-th kept posting of a part term goes to that term's fill point + k.
            ends = np.cumsum(per_term)
            starts = ends - per_term
            dest = np.repeat(fill[term_map] - starts, per_term) + np.arange(int(per_term.sum()), dtype=np.int64)
            rows_all[dest] = part_rows[kept]
            del part_rows
            tf_all[dest] = np.asarray(part.tf[:], dtype=np.float32)[kept]
            part_in_text = np.asarray(part.in_text[:], dtype=bool)[kept]
            in_text_all[dest] = part_in_text
            del dest, kept
            running = np.concatenate(([0], np.cumsum(part_in_text, dtype=np.int64)))  # a part's, not all postings'
            text_df[term_map] += running[ends] - running[starts]
            del running, part_in_text
            fill[term_map] += per_term
            lengths.append(part.lengths[keep])
            offset += len(keep)
        return cls(vocab, indptr, rows_all, tf_all, in_text_all,
                   np.concatenate(lengths) if lengths else np.zeros(0, np.float32), text_df.astype(np.int32))

    def terms(self) -> list[str]:
        """The vocabulary in term-id order."""
        out = [""] * len(self.vocab)
        for t, i in self.vocab.items():
            out[i] = t
        return out

    # -- one part of a query ---------------------------------------------------------------
    def term_counts(self, term: str, live: np.ndarray | None) -> tuple[int, int]:
        """Live chunks holding `term` (titles included) and holding it in their text."""
        tid = self.vocab.get(term)
        if tid is None:
            return 0, 0
        a, b = int(self.indptr[tid]), int(self.indptr[tid + 1])
        if live is None:
            return b - a, int(self.text_df[tid])
        alive = live[np.asarray(self.rows[a:b])]
        return int(np.count_nonzero(alive)), int(np.count_nonzero(alive & np.asarray(self.in_text[a:b])))

    def totals(self, live: np.ndarray | None) -> tuple[int, float]:
        """Live chunks and their total length."""
        if live is None:
            return self.size, float(self.lengths.sum(dtype=np.float64))
        return int(np.count_nonzero(live)), float(self.lengths[live].sum(dtype=np.float64))

    def part_scores(self, tokens: Sequence[str], stats: CorpusStats, out: np.ndarray) -> None:
        """Add each query token's BM25 contribution to `out` (this segment's rows). A repeated
        token counts twice, as in bm25s. Rows of deleted chunks are the caller's to mask."""
        if not self.size:
            return
        for t in tokens:
            tid = self.vocab.get(t)
            if tid is None:
                continue
            rows, saturated = self._saturated_tf(tid, stats.average_length)
            out[rows] += np.float32(_idf(stats.chunks, stats.df.get(t, 0))) * saturated

    SATURATED_MIN = 4_096  # postings: shorter lists are cheap to compute each time
    SATURATED_BYTES = 64 << 20  # per segment

    def _saturated_tf(self, tid: int, average_length: float) -> tuple[np.ndarray, np.ndarray]:
        """A term's rows and tf / (tf + k1 (1 - b + b len / avg)): its BM25 contribution without the IDF."""
        key = (tid, float(average_length))
        with self._saturated_lock:
            found = self._saturated.get(key)
            if found is not None:
                self._saturated.move_to_end(key)
                return found
        a, b = int(self.indptr[tid]), int(self.indptr[tid + 1])
        rows = np.asarray(self.rows[a:b])
        tf = np.asarray(self.tf[a:b])
        norm_a = np.float32(K1 * (1.0 - B))
        norm_b = np.float32(K1 * B / average_length)
        saturated = tf / (norm_a + norm_b * self.lengths[rows] + tf)
        if b - a >= self.SATURATED_MIN:
            with self._saturated_lock:
                if key not in self._saturated:
                    self._saturated[key] = (rows, saturated)
                    self._saturated_bytes += rows.nbytes + saturated.nbytes
                    while self._saturated_bytes > self.SATURATED_BYTES and len(self._saturated) > 1:
                        _, (r, w) = self._saturated.popitem(last=False)
                        self._saturated_bytes -= r.nbytes + w.nbytes
        return rows, saturated

    # -- the reader API on this segment alone ------------------------------------------------
    def view(self) -> "BM25View":
        """This segment alone, all of it live (made once: it caches term counts)."""
        if self._view is None:
            self._view = BM25View([(self, None)])
        return self._view

    def scores(self, query: str, stats: CorpusStats | None = None) -> np.ndarray:
        return self.view().scores(query, stats)

    def stats(self, query: str) -> CorpusStats:
        return self.view().stats(query)

    def idf(self, terms) -> dict[str, float]:
        return self.view().idf(terms)

    def scored_idf(self, terms) -> dict[str, float]:
        return self.view().scored_idf(terms)

    def document_frequency(self, term: str) -> int:
        return self.view().document_frequency(term)

    # -- storage ---------------------------------------------------------------------------
    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "terms.json").write_text(json.dumps(self.terms(), ensure_ascii=False))
        from .npyfile import save_npy

        for name, dtype in (("indptr", np.int64), ("rows", np.int32), ("tf", np.float32), ("in_text", bool),
                            ("lengths", np.float32), ("text_df", np.int32)):
            save_npy(directory / f"{name}.npy", getattr(self, name), dtype)  # a loaded file: copied

    @classmethod
    def load(cls, directory: Path) -> "BM25Index":
        from .errors import IndexCorruptError
        from .npyfile import NpyFile

        terms = json.loads((directory / "terms.json").read_text(encoding="utf-8"))
        indptr = np.load(directory / "indptr.npy")
        lengths = np.load(directory / "lengths.npy")
        text_df = np.load(directory / "text_df.npy")
        # Postings are read on demand (a query reads a few lists; at a million chunks they are ~0.5 GB).
        rows, tf, in_text = (NpyFile(directory / f"{n}.npy") for n in ("rows", "tf", "in_text"))
        if len(indptr) != len(terms) + 1 or int(indptr[-1]) != len(rows) or len(tf) != len(rows) \
                or len(in_text) != len(rows) or len(text_df) != len(terms):
            raise IndexCorruptError(f"BM25 postings at {directory} disagree on their sizes")
        return cls({t: i for i, t in enumerate(terms)}, indptr, rows, tf, in_text, lengths, text_df)


class BM25View:
    """BM25 over several segments' postings as one index: global statistics over live chunks,
    scores in one row space (segment after segment), deleted chunks scoring 0. Immutable like the
    index it belongs to, so corpus totals are computed once and term counts cached."""

    TERM_CACHE = 8192

    def __init__(self, parts: Sequence[tuple[BM25Index, np.ndarray | None]]):
        self.parts = list(parts)
        self.offsets = np.cumsum([0] + [p.size for p, _ in self.parts])
        self.rows = int(self.offsets[-1])
        totals = [part.totals(live) for part, live in self.parts]
        self.size = sum(n for n, _ in totals)
        self._length = sum(length for _, length in totals)
        self._dead = [None if live is None else np.flatnonzero(~live) for _, live in self.parts]
        self._counts: dict[str, tuple[int, int]] = {}
        self._lock = threading.Lock()

    def _term(self, term: str) -> tuple[int, int]:
        counts = self._counts.get(term)
        if counts is None:
            df = text_df = 0
            for part, live in self.parts:
                a, b = part.term_counts(term, live)
                df, text_df = df + a, text_df + b
            counts = (df, text_df)
            with self._lock:
                if len(self._counts) >= self.TERM_CACHE:
                    self._counts.clear()
                self._counts[term] = counts
        return counts

    def stats(self, query: str) -> CorpusStats:
        return self.term_stats(tokenize([query])[0])

    def term_stats(self, terms: Sequence[str]) -> CorpusStats:
        """The statistics of (already tokenized) `terms` over these segments."""
        counts = {t: self._term(t) for t in set(terms)}
        return CorpusStats(self.size, self._length, {t: c[0] for t, c in counts.items()},
                           {t: c[1] for t, c in counts.items()})

    def scores(self, query: str, stats: CorpusStats | None = None) -> np.ndarray:
        """BM25 score of every chunk row for `query` (zeros when the query has no indexable word).
        `stats` are the whole corpus' when these segments are only part of it (a shard)."""
        return self.token_scores(tokenize([query])[0], stats)

    def token_scores(self, tokens: Sequence[str], stats: CorpusStats | None = None) -> np.ndarray:
        """`scores` for an already tokenized query (a repeated token counts twice, as in bm25s)."""
        out = np.zeros(self.rows, dtype=np.float32)
        if not tokens or not self.rows:
            return out
        stats = stats if stats is not None else self.term_stats(tokens)
        for (part, _), dead, start in zip(self.parts, self._dead, self.offsets[:-1].tolist()):
            view = out[start:start + part.size]
            part.part_scores(tokens, stats, view)
            if dead is not None:
                view[dead] = 0.0
        return out

    def idf(self, terms) -> dict[str, float]:
        """Inverse document frequency over chunk text without titles (a title repeated in every
        chunk of a document would make its words look common)."""
        n = max(self.size, 1)
        return {t: _idf(n, self._term(t)[1]) for t in terms}

    def scored_idf(self, terms) -> dict[str, float]:
        """Inverse document frequency as the scores use it (titles included): comparing a score with
        an ideal one needs the same IDF on both sides."""
        if not self.size:
            return {t: 0.0 for t in terms}
        return {t: _idf(self.size, self._term(t)[0]) for t in terms}

    def document_frequency(self, term: str) -> int:
        """Live chunks whose text (titles aside) contains the (already tokenized) term."""
        return self._term(term)[1]
