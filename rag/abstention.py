"""The abstention threshold of a corpus, calibrated against the corpus itself.

The answerable model (rag/scoring.py) estimates the probability that the retrieved passages answer a
question, but one fixed threshold cannot serve every corpus: on a corpus whose documents all share a
topic (papers on coronaviruses, one news article) a question the corpus does not answer still finds
passages that share its words and its topic, and looks answerable. So each corpus gets a null
distribution: what the model says about near-topic questions that the corpus cannot answer.

Pseudo-questions are drawn from the corpus itself, deterministically: chunks spread evenly over its
rows, from each its longest prose sentence, a window of its words as the question. Each is asked of the
corpus with its own document left out (with very few documents, its own chunk and the neighbours that
share a sentence with it), through the same retrieval and sentence scoring as a real question, so
what comes back is exactly a near-topic question whose answer is not there. The threshold is then
max(base threshold, the `quantile` of those probabilities): a corpus whose near-topic questions look
answerable gets a stricter bar; a diverse one (Wikipedia articles) keeps the base threshold.

Cost: `queries` searches (96 by default: one to three seconds on two cores, ~6 s at a million
chunks), once per corpus: at the end of `rag ingest`, or at a server's first question when no
stored threshold fits. It is kept on disk beside the index (`abstention.json`, with what it depends
on) and for the corpus' live chunk count; when that count has changed by more than `stale_fraction`
(a few writes into a large corpus keep it; a corpus that doubles gets a new one) it is recomputed in
the background while questions use the previous one.
"""
from __future__ import annotations

import json
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from .errors import InvalidInputError
from .filters import Filter
from .generation.evidence import is_prose

if TYPE_CHECKING:
    from .index import Index

log = logging.getLogger("rag.abstention")
THRESHOLD_VERSION = 2  # of how a stored threshold was computed: bump when the method or models change


@dataclass(frozen=True)
class NullConfig:
    queries: int = 96  # pseudo-questions per corpus
    words: int = 10  # words of a pseudo-question (a window from the middle of its sentence)
    quantile: float = 0.8  # of the null probabilities: the threshold
    # A corpus never asks for more than even odds: in one of templated documents (records, logs, form
    # letters) every pseudo-question finds a sibling that looks like its answer, the null nears 1.0, and
    # a real question about the corpus' one article would abstain (0.93 with 60 records beside the seed).
    max_threshold: float = 0.5
    min_documents: int = 8  # below this, leave out the chunk (and neighbours) instead of the document
    stale_fraction: float = 0.2  # recompute when the live chunk count changed by more than this share
    same_title: bool = True  # leave out the other parts of its work too (documents with its title)


@dataclass(frozen=True)
class PseudoQuery:
    text: str
    exclude: np.ndarray  # chunk rows left out of its search


def _live_rows(index: "Index") -> np.ndarray:
    live = getattr(index, "live", None)
    return np.arange(len(index.chunks)) if live is None else np.flatnonzero(live)


# Chunk rows either side of a pseudo-question's own that its document is followed over (bounds the cost;
# the far chunks of a bigger document stay searchable).
MAX_EXCLUDED = 2_000


def pseudo_queries(index: "Index", config: NullConfig) -> list[PseudoQuery]:
    """Up to `config.queries` pseudo-questions, from chunks spread evenly over the live rows (the same
    corpus always gives the same ones)."""
    rows = _live_rows(index)
    if len(rows) < 2:
        return []
    by_document = index.document_count >= config.min_documents
    picked = np.unique(np.linspace(0, len(rows) - 1, min(config.queries, len(rows))).round().astype(np.int64))
    out = []
    for row in rows[picked].tolist():
        text = _question_from(index, row, config.words)
        if text:
            exclude = _own_rows(index, row, len(index.chunks), MAX_EXCLUDED if by_document else 1)
            if config.same_title and by_document:
                titled = _titled(index, index.documents[index.chunks.locate(row)[1]].title)
                if len(titled) <= len(rows) // 2:  # a title most documents share names no work
                    exclude = np.union1d(exclude, titled)
            if len(exclude) < len(rows):
                out.append(PseudoQuery(text, exclude))
    return out


def _titled(index: "Index", title: str) -> np.ndarray:
    """The live chunk rows of documents titled `title` (a paper split into paragraphs, a book into
    chapters: one work), through the filters' row masks."""
    try:
        mask = index.allowed(Filter.parse({"title": {"$eq": title}})) if title else None
    except InvalidInputError:  # a title longer than a filter may name: its own document alone
        mask = None
    return np.zeros(0, np.int64) if mask is None else np.flatnonzero(mask)


def _own_rows(index: "Index", row: int, n: int, reach: int) -> np.ndarray:
    """The chunk rows of `row`'s document within `reach` rows of it (a document's chunks are
    consecutive rows): its whole document, or with `reach` 1 the chunk and the neighbours that share
    a sentence with it."""
    doc = index.chunks.locate(row)[1]
    lo = hi = row
    while lo > 0 and row - lo < reach and index.chunks.locate(lo - 1)[1] == doc:
        lo -= 1
    while hi < n - 1 and hi - row < reach and index.chunks.locate(hi + 1)[1] == doc:
        hi += 1
    return np.arange(lo, hi + 1, dtype=np.int64)


def _question_from(index: "Index", row: int, words: int) -> str:
    """A window of `words` words from the middle of the chunk's longest prose sentence."""
    s0, s1 = index.chunk_sentences[row].tolist()
    best = ""
    for d, a, b in index.sentences[np.arange(s0, s1)].tolist():
        text = index.documents[d].text[a:b]
        if is_prose(text) and len(text) > len(best):
            best = text
    tokens = best.split()
    if len(tokens) < 4:
        return ""
    start = max(0, (len(tokens) - words) // 2)
    return " ".join(tokens[start:start + words])


# (index, question, chunk rows to leave out) -> the estimated probability that the passages answer it
Scorer = Callable[["Index", str, np.ndarray], float]


def null_probabilities(index: "Index", score: Scorer, config: NullConfig) -> np.ndarray:
    return np.array([score(index, q.text, q.exclude) for q in pseudo_queries(index, config)], dtype=np.float64)


class CorpusThreshold:
    """The threshold for the current corpus (see the module's docstring), shared by concurrent
    questions. The first computation for a corpus runs on the caller (one computes, the others
    wait); once a threshold exists, a stale one is recomputed in a background thread while questions
    go on with it, so a write that grows the corpus never makes a question wait seconds. With `path`
    the threshold is kept on disk with `key` (what it depends on: model, retrieval and answer
    settings), so a restart or a server started after `rag ingest` does not compute it again."""

    def __init__(self, score: Scorer, base: float, config: NullConfig = NullConfig(), *,
                 path: Path | None = None, key: str = ""):
        self._score, self.base, self.config = score, base, config
        self._path, self._key = path, key
        self._lock = threading.Lock()
        self._chunks = -1  # the live chunk count the threshold was computed for
        self._threshold = base
        self._refresh: threading.Thread | None = None
        self.null: np.ndarray = np.zeros(0)
        self._read()

    def _stale(self, chunks: int) -> bool:
        return self._chunks < 0 or abs(chunks - self._chunks) > self.config.stale_fraction * max(self._chunks, 1)

    def __call__(self, index: "Index") -> float:
        chunks = len(_live_rows(index))
        if not self._stale(chunks):
            return self._threshold
        with self._lock:
            if self._chunks < 0:  # none yet for this corpus
                self._compute(index, chunks)
            elif self._stale(chunks) and (self._refresh is None or not self._refresh.is_alive()):
                self._refresh = threading.Thread(target=self._compute_locked, args=(index, chunks),
                                                 name="abstention-threshold", daemon=True)
                self._refresh.start()
            return self._threshold

    def refresh(self, index: "Index") -> float:
        """Compute it now if it is stale (after a bulk ingest, which may exit before a background one ends)."""
        chunks = len(_live_rows(index))
        with self._lock:
            if self._stale(chunks):
                self._compute(index, chunks)
            return self._threshold

    def wait(self, timeout: float | None = None) -> None:
        """Until a background recomputation (if any) has finished."""
        refresh = self._refresh
        if refresh is not None:
            refresh.join(timeout)

    def _compute_locked(self, index: "Index", chunks: int) -> None:
        try:
            null = null_probabilities(index, self._score, self.config)
        except Exception:  # noqa: BLE001 - the old threshold stays; the next stale question tries again
            log.exception("recomputing the corpus' abstention threshold failed; keeping %.3f", self._threshold)
            return
        with self._lock:
            self._set(null, chunks)

    def _compute(self, index: "Index", chunks: int) -> None:
        self._set(null_probabilities(index, self._score, self.config), chunks)

    def _set(self, null: np.ndarray, chunks: int) -> None:
        self.null = null
        self._threshold = threshold_from(null, self.base, self.config.quantile, self.config.max_threshold)
        self._chunks = chunks
        self._write()

    def _read(self) -> None:
        if self._path is None:
            return
        try:
            stored = json.loads(self._path.read_text(encoding="utf-8"))
            if stored.get("key") == self._key:
                self.null = np.asarray(stored["null"], dtype=np.float64)
                self._threshold, self._chunks = float(stored["threshold"]), int(stored["chunks"])
        except FileNotFoundError:
            pass
        except (OSError, ValueError, KeyError, TypeError) as exc:  # a cache: computed again
            log.warning("ignoring %s (%s)", self._path, exc)

    def _write(self) -> None:
        if self._path is None:
            return
        body = {"key": self._key, "chunks": self._chunks, "threshold": self._threshold,
                "null": [round(float(x), 6) for x in self.null]}
        tmp = self._path.with_name(self._path.name + ".tmp")
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps(body), encoding="utf-8")
            os.replace(tmp, self._path)
        except OSError as exc:  # a read-only or full disk: computed again after a restart
            log.warning("could not keep the abstention threshold in %s (%s)", self._path, exc)


def threshold_from(null: Sequence[float], base: float, quantile: float,
                   cap: float = NullConfig.max_threshold) -> float:
    """max(base, min(cap, the quantile of the null probabilities)): the rule `CorpusThreshold` applies."""
    if not len(null):
        return base
    return max(base, min(cap, float(np.quantile(np.asarray(null, dtype=np.float64), quantile))))
