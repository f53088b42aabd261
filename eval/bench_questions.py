"""`rag bench`'s questions: every one used once in a run, so no cache ever answers one."""
from __future__ import annotations

import json
import random
import re
import threading
from pathlib import Path
from typing import Iterable, Sequence

from .measure import REPO, BenchError

SEED_DEV_QA = REPO.parent / "shared" / "data" / "seed_dev_qa.jsonl"


class QuestionStream:
    """Hands out questions, each at most once in the whole run (so no cache ever answers one)."""

    def __init__(self, questions: Iterable[str]):
        self._it = iter(questions)
        self._seen: set[str] = set()
        self._lock = threading.Lock()
        self.used = 0

    def next(self) -> str:
        with self._lock:
            for q in self._it:
                q = q.strip()
                if q and q not in self._seen:
                    self._seen.add(q)
                    self.used += 1
                    return q
        raise BenchError(f"ran out of distinct questions after {self.used}; use fewer --requests")

    def take(self, n: int) -> list[str]:
        return [self.next() for _ in range(n)]


_CAPS = re.compile(r"[A-Z][\w’'-]*(?:\s+(?:of\s+)?[A-Z][\w’'-]*)*")
_NOT_ENTITIES = {"A", "An", "The", "This", "That", "These", "It", "One", "As", "Until", "However", "Meanwhile",
                 "Sir", "US", "U", "S"}
_SINGLE = ["What did {a} say?", "Who is {a}?", "What role does {a} play?", "Why is {a} mentioned?",
           "What happened with {a}?", "What is {a}'s position?", "When was {a} involved?", "Where is {a}?",
           "What does {a} want?", "How did {a} respond?", "What is said about {a}?", "What did {a} propose?",
           "Who criticised {a}?", "What concerns does {a} have?", "Which plan involves {a}?",
           "What has {a} committed to?", "What was {a}'s reaction?", "Who supports {a}?"]
_PAIR = ["What is the link between {a} and {b}?", "How did {a} react to {b}?", "What did {a} say about {b}?",
         "Do {a} and {b} agree?", "Who met {a} and {b}?", "Why are {a} and {b} in conflict?"]


def seed_questions(documents: Sequence, dev_path: Path = SEED_DEV_QA, seed: int = 0) -> list[str]:
    """Distinct questions about the seed corpus: the dev questions first, then question templates
    filled with the capitalised names found in the documents (people, places, organisations), alone
    and in pairs, in a fixed shuffled order. The seed corpus has only a handful of real questions, and
    repeating them (or appending "variant k") would either hit the query cache or measure nonsense
    queries; these are real-looking questions whose terms BM25 and the dense index both find."""
    real: list[str] = []
    if dev_path.exists():
        for line in dev_path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                real.append(json.loads(line)["question"])
    entities: dict[str, None] = {}
    for doc in documents:
        for m in _CAPS.finditer(doc.text):
            words = m.group(0).split()
            while words and words[0] in _NOT_ENTITIES:
                words = words[1:]
            name = " ".join(words).rstrip("’'s").rstrip("’'")
            if len(name) >= 3 and name not in _NOT_ENTITIES:
                entities[name] = None
    names = list(entities)
    generated = [t.format(a=a) for t in _SINGLE for a in names]
    generated += [t.format(a=a, b=b) for t in _PAIR for a in names for b in names if a != b]
    random.Random(seed).shuffle(generated)
    return real + generated


def squad_questions(items: Sequence, indexed: set[str], seed: int = 0) -> list[str]:
    """SQuAD dev questions about the indexed paragraphs (shuffled, so phases are not all about one
    article), then, should those run out, the other dev questions (real questions still, whose answer
    is simply not in the slice)."""
    inside = [i.question for i in items if set(i.gold_documents) & indexed]
    outside = [i.question for i in items if not set(i.gold_documents) & indexed]
    rng = random.Random(seed)
    rng.shuffle(inside)
    rng.shuffle(outside)
    return inside + outside
