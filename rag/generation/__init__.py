"""Generators turn retrieved passages into an answer: segments of text with their citations.

Every generator follows the same rules: the answer is a list of segments (see `segments.py`) and its
plain text is rendered from them, so that every `[n]` in it is `citations[n-1]` and no other bracketed
number appears; citations are numbered by first use, every citation is used, and each citation's
`text` is exactly `document.text[start:end]`.
"""
from __future__ import annotations

import re
from typing import AsyncIterator, Protocol, Sequence, runtime_checkable

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_serializer

from ..conversation import Turn
from ..index import Index
from ..retrieval import Passage
from .segments import MARKER_RE, Segment, cited_markers, neutralise, render

__all__ = ["ABSTAIN_TEXT", "Answer", "Citation", "Generator", "MARKER_RE", "Segment", "abstain", "cited_markers",
           "neutralise", "render", "text_pieces"]

ABSTAIN_TEXT = "The documents don't say. None of the retrieved passages answers this question."


class Citation(BaseModel):
    id: int
    chunk_id: str
    document_id: str
    source: str
    title: str
    text: str = Field(description="Exactly the document's stored text[start:end].")
    start: int
    end: int
    score: float
    page: int | None = None  # 1-based page (PDF) or slide (pptx) holding `start`, when the document has pages

    @field_serializer("score")
    def _rounded(self, score: float) -> float:
        return round(float(score), 6)


class Fallback(BaseModel):
    """Another generator failed and this one answered instead."""

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)
    from_: str = Field(alias="from", description="The generator that failed.")
    reason: str


class Answer(BaseModel):
    text: str  # rendered from `segments` (see `Answer.of`)
    abstained: bool
    generator: str
    citations: list[Citation] = Field(default_factory=list)
    fallback: Fallback | None = None
    segments: list[Segment] = Field(default_factory=list)
    usage: dict | None = None  # the LLM server's own token counts, when it reported them

    @classmethod
    def of(cls, segments: Sequence[Segment], *, generator: str, citations: Sequence[Citation] = (),
           abstained: bool = False) -> "Answer":
        return cls(text=render(segments), abstained=abstained, generator=generator, citations=list(citations),
                   segments=list(segments))


class Generator(Protocol):
    name: str

    def generate(self, question: str, passages: Sequence[Passage], index: Index, *,
                 query_vector: np.ndarray | None = None) -> Answer:
        """`query_vector` is the question's embedding when the caller has it (embedded once per request)."""
        ...

    def astream(self, question: str, passages: Sequence[Passage], index: Index, *,
                query_vector: np.ndarray | None = None) -> AsyncIterator[str | Answer]:
        """Answer text in pieces as it is produced, then the final `Answer` as the last item.
        Concatenated, the pieces equal the final answer's text unless it abstained."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class Rewriter(Protocol):
    """A generator that can also rewrite a follow-up into a standalone question (an LLM)."""

    def rewrite(self, question: str, history: Sequence[Turn]) -> str: ...


def abstain(generator: str) -> Answer:
    return Answer.of([Segment(ABSTAIN_TEXT)], generator=generator, abstained=True)


def text_pieces(text: str) -> list[str]:
    """Word-sized pieces (each with its trailing space) for streaming an answer already made."""
    return re.findall(r"\S+\s*|\s+", text)
