"""Generators turn retrieved passages into an answer with `[n]` citations.

Every generator follows the same rules: `[n]` in the answer is `citations[n-1]`, citations are
numbered by first use, every citation is used, and each citation's `text` is exactly
`document.text[start:end]`.
"""
from __future__ import annotations

import re
from typing import AsyncIterator, Protocol, Sequence, runtime_checkable

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_serializer

from ..conversation import Turn
from ..index import Index
from ..retrieval import Passage

ABSTAIN_TEXT = "The documents don't say. None of the retrieved passages answers this question."
MARKER_RE = re.compile(r"\[(\d+(?:\s*,\s*\d+)*)\]")
_OPEN_MARKER_RE = re.compile(r"\[[\d\s,]*")  # what an unfinished marker can look like so far
_SPACED_MARKER_RE = re.compile(r"([ \t]*)\[(\d+(?:\s*,\s*\d+)*)\]")


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
    text: str
    abstained: bool
    generator: str
    citations: list[Citation] = Field(default_factory=list)
    fallback: Fallback | None = None


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
    return Answer(text=ABSTAIN_TEXT, abstained=True, generator=generator, citations=[])


def cited_markers(text: str) -> list[int]:
    """Marker numbers in order of appearance, `[1]`, `[2, 3]` alike."""
    out = []
    for m in MARKER_RE.finditer(text):
        out.extend(int(x) for x in m.group(1).split(","))
    return out


class MarkerRenumberer:
    """Renumbers passage markers `[p]` into citation numbers by first use, incrementally, so that a
    streamed answer and the final one agree. Markers naming no passage are dropped."""

    def __init__(self, passages: int):
        self.passages = passages
        self.numbering: dict[int, int] = {}  # passage number -> citation number
        self._pending = ""

    def _renumber(self, match: re.Match) -> str:
        out = []
        for raw in match.group(2).split(","):
            n = int(raw)
            if 1 <= n <= self.passages:
                self.numbering.setdefault(n, len(self.numbering) + 1)
                out.append(f"[{self.numbering[n]}]")
        return match.group(1) + "".join(out) if out else ""  # a dropped marker takes its leading space along

    def feed(self, text: str) -> str:
        """Text that is safe to emit now. A possibly unfinished marker, and trailing white space that
        may precede one, are held back."""
        self._pending += text
        cut = self._pending.rfind("[")
        if cut == -1 or not _OPEN_MARKER_RE.fullmatch(self._pending[cut:]):
            cut = len(self._pending)
        while cut > 0 and self._pending[cut - 1].isspace():
            cut -= 1
        ready, self._pending = self._pending[:cut], self._pending[cut:]
        return _SPACED_MARKER_RE.sub(self._renumber, ready)

    def finish(self) -> str:
        rest, self._pending = self._pending, ""
        return _SPACED_MARKER_RE.sub(self._renumber, rest)


def text_pieces(text: str) -> list[str]:
    """Word-sized pieces (each with its trailing space) for streaming an answer already made."""
    return re.findall(r"\S+\s*|\s+", text)
