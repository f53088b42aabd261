"""LLM-judged answer metrics with Ragas' definitions, from one judge call per question.

- faithfulness: the answer split into statements; the share of them the retrieved passages support.
- answer relevance: questions the judge writes for the answer; the mean cosine similarity of their
  embeddings (the served embedding model) with the question's.
- context precision: the judge marks each retrieved passage as useful for the reference answer or not;
  the mean of precision@k over the ranks k of the useful ones (0 when none is useful).
- context recall: the reference answer split into sentences; the share the passages support.

The judge is any OpenAI-compatible chat model (the one configured for answers); its prompt is
`PROMPT`, written into the report so that a reader can see exactly what was asked.
"""
from __future__ import annotations

import json
import logging
from typing import Callable, Sequence

import numpy as np

log = logging.getLogger("rag.eval")
MAX_PASSAGE_CHARS = 1500

PROMPT = """You are grading a question-answering system. Reply with one JSON object and nothing else.

Question: {question}

Reference answer (may be empty): {reference}

Answer to grade: {answer}

Retrieved passages:
{passages}

Return:
{{"statements": [{{"statement": "<one self-contained claim made by the answer>", "supported": true|false}}],
  "questions": ["<a question the answer would answer>", "<another>", "<another>"],
  "passages": [{{"index": <passage number>, "useful": true|false}}],
  "reference_sentences": [{{"sentence": "<a sentence of the reference answer>", "attributed": true|false}}]}}

Rules: "statements" covers every claim in the answer; "supported" is true only if the passages state
or directly imply it. "questions" are three questions the answer responds to. "passages" has one entry per
retrieved passage, "useful" if it helps to arrive at the reference answer (or, with no reference, the
answer). "reference_sentences" splits the reference answer into sentences; "attributed" if the passages
contain that information. Use empty lists where there is nothing to list."""


def _json_object(text: str) -> dict | None:
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end <= start:
        return None
    try:
        obj = json.loads(text[start:end + 1])
    except ValueError:
        return None
    return obj if isinstance(obj, dict) else None


def _flags(items, key: str) -> list[bool]:
    return [bool(i.get(key)) for i in items if isinstance(i, dict)] if isinstance(items, list) else []


def context_precision(useful: Sequence[bool]) -> float:
    """Ragas: sum over ranks k of precision@k * v_k, divided by the number of useful passages."""
    hits, total = 0, 0.0
    for k, v in enumerate(useful, start=1):
        if v:
            hits += 1
            total += hits / k
    return total / hits if hits else 0.0


class Judge:
    def __init__(self, complete: Callable[[list[dict]], str],
                 embed: Callable[[list[str]], np.ndarray] | None = None):
        self.complete, self.embed = complete, embed
        self.failures = 0

    def score(self, question: str, answer: str, abstained: bool, passages: Sequence[dict],
              references: Sequence[str]) -> dict:
        """The four metrics for one answered question (None where they do not apply or the judge failed)."""
        out = {"faithfulness": None, "answer_relevance": None, "context_precision": None, "context_recall": None}
        if abstained or not passages:
            return out
        listed = "\n".join(f"[{i}] {p['text'][:MAX_PASSAGE_CHARS]}" for i, p in enumerate(passages, start=1))
        prompt = PROMPT.format(question=question, reference=" / ".join(references), answer=answer, passages=listed)
        try:
            verdict = _json_object(self.complete([{"role": "user", "content": prompt}]))
        except Exception as exc:  # noqa: BLE001 - a failed judge call costs this question's scores only
            log.warning("judge call failed: %s", exc)
            verdict = None
        if verdict is None:
            self.failures += 1
            return out
        supported = _flags(verdict.get("statements"), "supported")
        if supported:
            out["faithfulness"] = sum(supported) / len(supported)
        by_index = {}
        for p in verdict.get("passages") or []:
            if isinstance(p, dict) and isinstance(p.get("index"), int):
                by_index[p["index"]] = bool(p.get("useful"))
        if by_index:
            out["context_precision"] = context_precision([by_index.get(i, False) for i in range(1, len(passages) + 1)])
        attributed = _flags(verdict.get("reference_sentences"), "attributed")
        if references and attributed:
            out["context_recall"] = sum(attributed) / len(attributed)
        questions = [q for q in verdict.get("questions") or [] if isinstance(q, str) and q.strip()]
        if questions and self.embed is not None:
            vectors = np.asarray(self.embed([question, *questions]), dtype=np.float32)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True) + 1e-12
            out["answer_relevance"] = float(np.mean(vectors[1:] @ vectors[0]))
        return out


JUDGED = ("faithfulness", "answer_relevance", "context_precision", "context_recall")
