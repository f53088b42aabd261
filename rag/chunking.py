"""Sentence-aware chunking with character offsets into the document's stored text."""
from __future__ import annotations

import ctypes
import re
from dataclasses import dataclass

import blingfire
import numpy as np

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


_LONGEST_BOILERPLATE = max(map(len, BOILERPLATE_LINES)) + 10  # room for punctuation and spacing


def is_boilerplate(line: str) -> bool:
    if len(line) > _LONGEST_BOILERPLATE:  # most lines: no regex needed
        return False
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


def sentence_offsets(line: str) -> list[tuple[int, int]]:
    """blingfire's sentence boundaries in `line` as [start, end) character offsets.

    blingfire's own `text_to_sentences_and_offsets` maps its UTF-8 byte offsets to characters in a
    Python loop over every byte, which took most of the ingest time without the model (20 of 41 s
    for 20k chunks); here the mapping is one numpy pass, or none for ASCII text."""
    data = line.encode("utf-8")
    if not data:
        return []
    capacity = len(data) * 2
    out = ctypes.create_string_buffer(capacity)
    starts, ends = (ctypes.c_int32 * capacity)(), (ctypes.c_int32 * capacity)()
    n_bytes = blingfire.blingfire.TextToSentencesWithOffsets(
        ctypes.c_char_p(data), ctypes.c_int(len(data)), ctypes.byref(out), ctypes.byref(starts), ctypes.byref(ends),
        ctypes.c_int(capacity))
    if n_bytes == -1 or n_bytes > capacity:
        return [(0, len(line))] if line else []
    count = out.value.count(b"\n") + 1
    first = np.frombuffer(starts, dtype=np.int32, count=count).astype(np.int64)
    last = np.frombuffer(ends, dtype=np.int32, count=count).astype(np.int64)  # the last byte, inclusive
    if len(data) == len(line):  # ASCII: bytes are characters
        return list(zip(first.tolist(), (last + 1).tolist()))
    char_of_byte = np.cumsum((np.frombuffer(data, dtype=np.uint8) & 0xC0) != 0x80) - 1
    return list(zip(char_of_byte[first].tolist(), (char_of_byte[last] + 1).tolist()))


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
        for a, b in sentence_offsets(body):
            s, e = offset + a, offset + b
            while s < e and text[s].isspace():
                s += 1
            while e > s and text[e - 1].isspace():
                e -= 1
            if e > s:
                sections[-1].extend(_split_long(s, e, text, max_chars))
    return [s for s in sections if s]


def chunk_document(doc: Document, config: ChunkingConfig = ChunkingConfig(),
                   sections: list[list[Span]] | None = None) -> list[Chunk]:
    """Group consecutive sentences into chunks of about `config.size` characters. `sections` is
    `split_sentences(doc.text, config.size)` when the caller has it already."""
    chunks: list[Chunk] = []
    if sections is None:
        sections = split_sentences(doc.text, config.size)
    for sentences in sections:
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
