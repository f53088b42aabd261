"""Scores that mean the same across questions and corpora.

Raw retrieval signals do not: a cosine of 0.5 is high for news and ordinary for biomedical text, a
BM25 score grows with the question's length and the corpus' vocabulary, and min-max rescaling per
question makes the best of a bad lot look perfect. Each signal here is put on a scale that the
question itself fixes, and the signals are combined by a logistic model fitted on two held-out
benchmarks of different domains (SQuAD and COVID-QA dev with `--holdout-every 6`):

    cosine      cos(question, text) of the sentence-transformers model (absolute, in [-1, 1])
    coverage    the share of the question's IDF mass whose terms occur in the text: 1.0 when the text
                contains every content word of the question, weighted by how rare each word is
    bm25_share  the passage's BM25 score divided by the score of an ideal passage that contains every
                question term once at average length (sum of the terms' IDF), so 1.0 is "as good a
                lexical match as the question allows"
    unknown     the share of the question's IDF mass in words that no document contains at all: a
                question naming things the corpus never mentions is about something else
    margins     how far the best BM25 share and the best cosine stand out from the next 19 candidates
                (on a corpus that shares the question's topic, an unanswerable question matches many
                passages about equally well)

A passage's `score` is the model's estimate of the probability that the passage comes from a
document that answers the question; a citation's `score` the estimate that the quoted sentence
contains the answer; ANSWERABLE_MODEL the estimate that the retrieved passages answer the question at
all (the extractive generator abstains below `abstain_threshold`). All are probabilities in [0, 1],
comparable between questions and corpora.
"""
from __future__ import annotations

import math
import re
import threading
import weakref
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Sequence

import numpy as np

from .lexical import tokenize
from .sentence_terms import hashes_of, term_hash


@dataclass(frozen=True)
class QueryTerms:
    terms: frozenset[str]
    idf: dict[str, float]
    total: float  # sum of the IDF of the distinct terms
    unknown: float  # share of `total` in terms no document contains
    bm25_ideal: float  # BM25 of a passage holding each query token once at average length
    # adjacent token pairs of the question, each weighing the IDF of its content words, shares summing to 1
    bigrams: dict[tuple[str, str], float] = field(default_factory=dict)

    def coverage(self, tokens: Sequence[str]) -> float:
        if not self.total:
            return 0.0
        return sum(self.idf[t] for t in self.terms.intersection(tokens)) / self.total

    def phrase_coverage(self, tokens: Sequence[str]) -> float:
        """The share of the question's adjacent word pairs (stop words removed) that occur adjacent in
        `tokens`: 'incubation period' matches as a phrase, not as two words far apart."""
        if not self.bigrams:
            return 0.0
        pairs = set(zip(tokens, tokens[1:]))
        return sum(w for pair, w in self.bigrams.items() if pair in pairs)

    def sentence_match(self, tokens: Sequence[str]) -> float:
        """How well one sentence matches the question lexically: its coverage plus half its phrase
        coverage (so in [0, 1.5]; the weight was chosen on SQuAD and COVID-QA together)."""
        hits = self.terms.intersection(tokens)
        if not hits or not self.total:
            return 0.0
        coverage = sum(self.idf[t] for t in hits) / self.total
        return coverage + PHRASE_WEIGHT * self.phrase_coverage(tokens) if len(hits) > 1 else coverage

    def sentence_matches(self, hashes: np.ndarray, owner: np.ndarray, n: int) -> np.ndarray:
        """`sentence_match` of `n` sentences at once from their stored term hashes (sentence_terms.py):
        `hashes` concatenated in order, `owner[i]` the sentence (0..n-1) that hashes[i] belongs to."""
        out = np.zeros(n, dtype=np.float64)
        if not self.total or not len(hashes):
            return out
        terms = sorted(self.terms)
        q = hashes_of(terms)
        order = np.argsort(q)
        q, weights = q[order], np.asarray([self.idf[terms[i]] / self.total for i in order.tolist()])
        at = np.minimum(np.searchsorted(q, hashes), len(q) - 1)
        hit = q[at] == hashes
        pairs = np.unique(owner[hit] * len(q) + at[hit])  # (sentence, term), each once
        hit_owner = pairs // len(q)
        out += np.bincount(hit_owner, weights=weights[pairs % len(q)], minlength=n)
        if self.bigrams:
            hits = np.bincount(hit_owner, minlength=n)
            keys = hashes[:-1] * _PAIR_MIX + hashes[1:]  # wraps around: a hash of the pair
            same = owner[:-1] == owner[1:]
            b_keys = [(term_hash(a) * _PAIR_MIX_INT + term_hash(b)) & _MASK64 for a, b in self.bigrams]
            b_keys = np.asarray([k - (1 << 64) if k >= 1 << 63 else k for k in b_keys], dtype=np.int64)
            b_order = np.argsort(b_keys)
            b_keys = b_keys[b_order]
            b_weights = np.asarray(list(self.bigrams.values()))[b_order]
            at = np.minimum(np.searchsorted(b_keys, keys), len(b_keys) - 1)
            found = same & (b_keys[at] == keys)
            pairs = np.unique(owner[:-1][found] * len(b_keys) + at[found])
            phrase = np.bincount(pairs // len(b_keys), weights=b_weights[pairs % len(b_keys)], minlength=n)
            out += np.where(hits > 1, PHRASE_WEIGHT * phrase, 0.0)
        return out


PHRASE_WEIGHT = 0.5
_PAIR_MIX_INT = 0x9E3779B97F4A7C15  # odd: pair keys a * mix + b (mod 2^64)
_PAIR_MIX = np.int64(_PAIR_MIX_INT - (1 << 64))
_MASK64 = (1 << 64) - 1


# "How much", "how many", "how long" ...: the word after "how" shapes the question (it asks for a
# quantity) and is not something the answer's sentence must contain. Left in, "much" (rare in
# documents) weighed as the question's most specific term and made "How much is a croissant?" look
# unanswerable against a menu reading "Croissant | 2.50 EUR".
_HOW_WORD = re.compile(r"\bhow\s+(\w+)", re.IGNORECASE)
# Likewise the verb of "What did X say / think / mean?": it asks for what was said, which the answer
# quotes without the verb ("Peskov ... expressing disapproval").
_ASKING_VERBS = " ".join(("say", "said", "says", "saying", "tell", "told", "think", "thought", "mean", "means",
                          "meant", "claim", "claimed", "state", "stated", "argue", "argued", "suggest", "suggested"))


@lru_cache(maxsize=1)
def _asking_stems() -> frozenset[str]:
    return frozenset(tokenize([_ASKING_VERBS])[0])  # stemmed once, not on every question


# A request reads the question's terms three times (fusion, passage signals, sentence scores); they
# depend only on the question and the (immutable) BM25 view, so the last few are kept per view.
_RECENT_TERMS: "weakref.WeakKeyDictionary[object, dict[str, QueryTerms]]" = weakref.WeakKeyDictionary()
_RECENT_LOCK = threading.Lock()
_RECENT_PER_VIEW = 16


def query_terms(question: str, bm25) -> QueryTerms:
    with _RECENT_LOCK:
        recent = _RECENT_TERMS.get(bm25)
        found = recent.get(question) if recent is not None else None
    if found is not None:
        return found
    terms = _query_terms(question, bm25)
    with _RECENT_LOCK:
        recent = _RECENT_TERMS.setdefault(bm25, {})
        if len(recent) >= _RECENT_PER_VIEW:
            recent.pop(next(iter(recent)))
        recent[question] = terms
    return terms


def _query_terms(question: str, bm25) -> QueryTerms:
    how = _HOW_WORD.findall(question)
    shape = _asking_stems() | (set(tokenize([" ".join(how)])[0]) if how else set())
    all_tokens = tokenize([question])[0]
    tokens = [t for t in all_tokens if t not in shape]
    terms = frozenset(tokens)
    idf = bm25.idf(terms)
    total = sum(idf.values())
    unknown = sum(idf[t] for t in terms if not bm25.document_frequency(t))
    # bm25s sums a repeated query token twice, so the ideal counts tokens, not distinct terms; its IDF
    # is the one the scores were computed with (titles included), or shares would not compare.
    scored = bm25.scored_idf(terms)
    ideal = sum(scored[t] for t in tokens)
    pairs = {(a, b): idf.get(a, 0.0) + idf.get(b, 0.0) for a, b in zip(all_tokens, all_tokens[1:]) if a != b}
    pair_total = sum(pairs.values())
    bigrams = {p: w / pair_total for p, w in pairs.items() if w > 0} if pair_total > 0 else {}
    return QueryTerms(terms=terms, idf=idf, total=total, unknown=unknown / total if total else 0.0,
                      bm25_ideal=ideal, bigrams=bigrams)


@dataclass(frozen=True)
class Logistic:
    """p = sigmoid(bias + sum(weight * feature)), features in the order of `names`."""

    names: tuple[str, ...]
    weights: tuple[float, ...]
    bias: float

    def __call__(self, **features: float) -> float:
        z = self.bias + sum(w * features[n] for n, w in zip(self.names, self.weights))
        return 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, z))))


# Fitted by eval/calibrate.py on SQuAD dev (first 12 articles) and COVID-QA dev, each with every 6th
# article from the 4th on held out (its questions unanswerable), the two sets weighted equally; the
# numbers in docs/quality.md are from the other split (every 6th from the 1st, `rag eval --holdout-every 6`).
PASSAGE_MODEL = Logistic(("sentence_cosine", "cosine", "bm25_share", "coverage", "unknown"),
                         (6.096, 1.822, -0.13, 4.42, 0.789), -9.036)


def answerable_features(passages, sentences: Sequence[dict]) -> dict[str, float]:
    """Question-level evidence: the top passage's signals, the best lexical match among the passages,
    and the cosine and coverage of the sentence with the most of both (model-free, so that the
    abstention decision does not depend on the sentence model)."""
    best_sentence = max(sentences, key=lambda f: f["cosine"] + f["coverage"], default={"cosine": 0.0, "coverage": 0.0})
    top = passages[0].signals
    return {"sentence_cosine": top["sentence_cosine"], "cosine": top["cosine"],
            "bm25_share": max(p.signals["bm25_share"] for p in passages),
            "coverage": max(p.signals["coverage"] for p in passages), "unknown": top["unknown"],
            "best_cosine": best_sentence["cosine"], "best_coverage": best_sentence["coverage"],
            "bm25_margin": top["bm25_margin"], "cosine_margin": top["cosine_margin"]}


ANSWERABLE_MODEL = Logistic(("sentence_cosine", "cosine", "bm25_share", "coverage", "unknown", "best_cosine",
                             "best_coverage", "bm25_margin", "cosine_margin"),
                            (3.766, 0.257, -0.694, 0.449, -1.306, 4.647, 2.423, 6.59, 6.179), -7.802)
SENTENCE_MODEL = Logistic(("cosine", "coverage", "passage", "unknown"), (4.229, 2.781, 1.362, -1.719), -6.385)
