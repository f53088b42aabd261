"""Generators turn retrieved passages into an answer with `[n]` citations.

Every generator follows the same rules: `[n]` in the answer is `citations[n-1]`, citations are
numbered by first use, every citation is used, and each citation's `text` is exactly
`document.text[start:end]`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Protocol, Sequence

from ..index import Index
from ..retrieval import Passage

ABSTAIN_TEXT = "The documents don't say. None of the retrieved passages answers this question."
MARKER_RE = re.compile(r"\[(\d+(?:\s*,\s*\d+)*)\]")


@dataclass
class Citation:
    id: int
    chunk_id: str
    document_id: str
    source: str
    title: str
    text: str
    start: int
    end: int
    score: float

    def to_dict(self) -> dict:
        return {"id": self.id, "chunk_id": self.chunk_id, "document_id": self.document_id, "source": self.source,
                "title": self.title, "text": self.text, "start": self.start, "end": self.end,
                "score": round(float(self.score), 6)}


@dataclass
class Answer:
    text: str
    abstained: bool
    generator: str
    citations: list[Citation] = field(default_factory=list)
    fallback: dict | None = None  # set when another generator failed and this one answered instead


class Generator(Protocol):
    name: str

    def generate(self, question: str, passages: Sequence[Passage], index: Index) -> Answer: ...


def abstain(generator: str) -> Answer:
    return Answer(text=ABSTAIN_TEXT, abstained=True, generator=generator, citations=[])


def cited_markers(text: str) -> list[int]:
    """Marker numbers in order of appearance, `[1]`, `[2, 3]` alike."""
    out = []
    for m in MARKER_RE.finditer(text):
        out.extend(int(x) for x in m.group(1).split(","))
    return out
