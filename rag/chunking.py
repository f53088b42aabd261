"""Sentence-aware chunking with character offsets into the document's stored text."""
from __future__ import annotations

import re
from dataclasses import dataclass

import blingfire

from .documents import Document

# Lines that are page furniture, not content: never retrieval units, and chunks break at them.
BOILERPLATE_LINES = frozenset({
    "article image", "image", "photo", "picture", "video", "advertisement", "advert", "ad",
    "sponsored", "read more", "related", "share", "share this article", "click here",
    "subscribe", "sign up", "skip to content", "skip advertisement", "continue reading",
})
_WORD_RE = re.compile(r"\w+", re.UNICODE)


@dataclass(frozen=True)
class Span:
    start: int
    end: int


@dataclass(frozen=True)
class Chunk:
    id: str
    document_id: str
    start: int
    end: int
    text: str
    sentences: tuple[Span, ...]  # sentences inside [start, end), in order


@dataclass(frozen=True)
class ChunkingConfig:
    size: int = 1000
    overlap: int = 1  # sentences repeated at the start of the next chunk

    def __post_init__(self) -> None:
        if self.size < 100:
            raise ValueError(f"chunk size must be at least 100 characters, got {self.size}")
        if self.overlap < 0:
            raise ValueError(f"chunk overlap must be >= 0, got {self.overlap}")


def is_boilerplate(line: str) -> bool:
    words = _WORD_RE.findall(line.lower())
    return bool(words) and " ".join(words) in BOILERPLATE_LINES


def _split_long(start: int, end: int, text: str, limit: int) -> list[Span]:
    """Split an over-long sentence at whitespace so that no unit exceeds `limit` characters."""
    spans: list[Span] = []
    while end - start > limit:
        cut = text.rfind(" ", start + limit // 2, start + limit)
        cut = cut if cut > start else start + limit
        piece_end = cut
        while piece_end > start and text[piece_end - 1].isspace():
            piece_end -= 1
        spans.append(Span(start, piece_end))
        start = cut
        while start < end and text[start].isspace():
            start += 1
    if end > start:
        spans.append(Span(start, end))
    return spans


def split_sentences(text: str, max_chars: int = 1000) -> list[list[Span]]:
    """Sentences of `text` grouped into sections; boilerplate lines end a section and are dropped.

    Lines are split first (a line break always ends a sentence), then each line with blingfire.
    """
    sections: list[list[Span]] = [[]]
    pos = 0
    for line in text.splitlines(keepends=True):
        line_start, pos = pos, pos + len(line)
        body = line.strip()
        if not body:
            continue
        if is_boilerplate(body):
            if sections[-1]:
                sections.append([])
            continue
        offset = line_start + (len(line) - len(line.lstrip()))
        _, spans = blingfire.text_to_sentences_and_offsets(body)
        for a, b in spans:
            s, e = offset + a, offset + b
            while s < e and text[s].isspace():
                s += 1
            while e > s and text[e - 1].isspace():
                e -= 1
            if e > s:
                sections[-1].extend(_split_long(s, e, text, max_chars))
    return [s for s in sections if s]


def chunk_document(doc: Document, config: ChunkingConfig = ChunkingConfig()) -> list[Chunk]:
    """Group consecutive sentences into chunks of about `config.size` characters."""
    chunks: list[Chunk] = []
    for sentences in split_sentences(doc.text, config.size):
        i = 0
        while i < len(sentences):
            j = i + 1
            while j < len(sentences) and sentences[j].end - sentences[i].start <= config.size:
                j += 1
            group = sentences[i:j]
            start, end = group[0].start, group[-1].end
            chunks.append(Chunk(
                id=f"{doc.id}:{len(chunks)}",
                document_id=doc.id,
                start=start,
                end=end,
                text=doc.text[start:end],
                sentences=tuple(group),
            ))
            if j >= len(sentences):
                break
            i = max(i + 1, j - config.overlap)
    return chunks
