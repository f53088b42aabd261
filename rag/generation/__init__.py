"""Generators turn retrieved passages into an answer: segments of text with their citations.

Every generator follows the same rules: the answer is a list of segments (see `segments.py`) and its
plain text is rendered from them, so that every `[n]` in it is `citations[n-1]` and no other bracketed
number appears; citations are numbered by first use, every citation is used, and each citation's
`text` is exactly `document.text[start:end]`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import AsyncIterator, Protocol, Sequence

from ..index import Index
from ..retrieval import Passage
from .segments import MARKER_RE, Segment, cited_markers, neutralise, render

__all__ = ["ABSTAIN_TEXT", "Answer", "Citation", "Generator", "MARKER_RE", "Segment", "abstain", "cited_markers",
           "neutralise", "render", "text_pieces"]

ABSTAIN_TEXT = "The documents don't say. None of the retrieved passages answers this question."


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
    text: str  # rendered from `segments` (see `Answer.of`)
    abstained: bool
    generator: str
    citations: list[Citation] = field(default_factory=list)
    fallback: dict | None = None  # set when another generator failed and this one answered instead
    segments: list[Segment] = field(default_factory=list)

    @classmethod
    def of(cls, segments: Sequence[Segment], *, generator: str, citations: Sequence[Citation] = (),
           abstained: bool = False) -> "Answer":
        return cls(text=render(segments), abstained=abstained, generator=generator, citations=list(citations),
                   segments=list(segments))


class Generator(Protocol):
    name: str

    def generate(self, question: str, passages: Sequence[Passage], index: Index) -> Answer: ...

    def astream(self, question: str, passages: Sequence[Passage], index: Index) -> AsyncIterator[str | Answer]:
        """Answer text in pieces as it is produced, then the final `Answer` as the last item.
        Concatenated, the pieces equal the final answer's text unless it abstained."""
        ...


def abstain(generator: str) -> Answer:
    return Answer.of([Segment(ABSTAIN_TEXT)], generator=generator, abstained=True)


def text_pieces(text: str) -> list[str]:
    """Word-sized pieces (each with its trailing space) for streaming an answer already made."""
    return re.findall(r"\S+\s*|\s+", text)
