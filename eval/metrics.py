"""Metrics, each a small function over plain data so that it can be tested on a hand-made case."""
from __future__ import annotations

import math
import re
import string
from collections import Counter
from typing import Iterable, Sequence

from rag.generation import cited_markers
from rag.generation.segments import LITERAL_BRACKET_RE, MARKER_RE

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCT = set(string.punctuation) | {"\u2018", "\u2019", "\u201c", "\u201d", "\u2013", "\u2014"}
_MARKER = re.compile(r"\[\d+(?:\s*,\s*\d+)*\]")


def normalize_answer(s: str) -> str:
    """SQuAD's normalisation: lower case, no punctuation, no articles, single spaces."""
    s = "".join(ch for ch in s.lower() if ch not in _PUNCT)
    return " ".join(_ARTICLES.sub(" ", s).split())


def strip_markers(answer: str) -> str:
    return _MARKER.sub("", answer)


def exact_match(prediction: str, golds: Sequence[str]) -> float:
    p = normalize_answer(prediction)
    return float(any(p == normalize_answer(g) for g in golds)) if golds else 0.0


def f1(prediction: str, golds: Sequence[str]) -> float:
    def one(gold: str) -> float:
        pt, gt = normalize_answer(prediction).split(), normalize_answer(gold).split()
        common = Counter(pt) & Counter(gt)
        same = sum(common.values())
        if not pt or not gt:
            return float(pt == gt)
        if same == 0:
            return 0.0
        precision, recall = same / len(pt), same / len(gt)
        return 2 * precision * recall / (precision + recall)

    return max((one(g) for g in golds), default=0.0)


def contains_answer(text: str, golds: Sequence[str]) -> float:
    """1 when a normalised gold answer occurs in the normalised text (on word boundaries)."""
    t = f" {normalize_answer(text)} "
    return float(any(normalize_answer(g) and f" {normalize_answer(g)} " in t for g in golds))


def word_count(answer: str) -> int:
    return len(strip_markers(answer).split())


def ranked_documents(passages: Iterable[dict]) -> list[str]:
    """Document ids in passage order, duplicates removed (chunks mapped back to their documents)."""
    return list(dict.fromkeys(p["document_id"] for p in passages))


def hit_at(docs: Sequence[str], gold: Iterable[str], k: int) -> float:
    gold = set(gold)
    return float(any(d in gold for d in docs[:k]))


def mrr_at(docs: Sequence[str], gold: Iterable[str], k: int = 10) -> float:
    gold = set(gold)
    for rank, d in enumerate(docs[:k], start=1):
        if d in gold:
            return 1.0 / rank
    return 0.0


def ndcg_at(docs: Sequence[str], gold: Iterable[str], k: int = 10) -> float:
    gold = set(gold)
    dcg = sum(1.0 / math.log2(rank + 1) for rank, d in enumerate(docs[:k], start=1) if d in gold)
    ideal = sum(1.0 / math.log2(rank + 1) for rank in range(1, min(len(gold), k) + 1))
    return dcg / ideal if ideal else 0.0


def stray_brackets(answer: str) -> list[str]:
    """Bracketed numbers in the answer that are not well-formed markers ("[1-3]", "[2a]"): a reader
    (or the widget) cannot tell what they point at."""
    return [m.group(0) for m in LITERAL_BRACKET_RE.finditer(answer) if not MARKER_RE.fullmatch(m.group(0))]


def citations_valid(answer: str, citations: Sequence[dict], documents: dict[str, str] | None) -> bool:
    """The marker contract, read from the answer text: every bracketed number in it is a marker
    `[n]` that resolves to citations[n-1], every citation is used, numbering is by first use; and
    (when the documents' stored text is known) each citation's text is exactly text[start:end]."""
    if stray_brackets(answer):
        return False
    markers = cited_markers(answer)
    ids = [c["id"] for c in citations]
    if ids != list(range(1, len(citations) + 1)):
        return False
    if any(m < 1 or m > len(citations) for m in markers):
        return False
    if list(dict.fromkeys(markers)) != ids:  # all used, first use in order
        return False
    if documents is not None:
        for c in citations:
            text = documents.get(c["document_id"])
            if text is None or text[c["start"]:c["end"]] != c["text"]:
                return False
    return True


def citation_supports(citations: Sequence[dict], golds: Sequence[str]) -> float:
    """1 when some cited text contains a gold answer."""
    return float(any(contains_answer(c["text"], golds) for c in citations))


def abstention_scores(abstained: Sequence[bool], answerable: Sequence[bool]) -> dict[str, float | None]:
    """Precision and recall of abstaining, where abstaining is right exactly on unanswerable questions."""
    tp = sum(a and not ok for a, ok in zip(abstained, answerable))
    predicted = sum(abstained)
    actual = sum(not ok for ok in answerable)
    precision = tp / predicted if predicted else None
    recall = tp / actual if actual else None
    return {"abstention_precision": precision, "abstention_recall": recall,
            "abstention_rate": predicted / len(abstained) if abstained else None}


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear-interpolated percentile, q in [0, 100]."""
    if not values:
        return None
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def mean(values: Iterable[float]) -> float | None:
    xs = list(values)
    return sum(xs) / len(xs) if xs else None
