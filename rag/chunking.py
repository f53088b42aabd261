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
# How sentences are split; stored in the index config so that an index split otherwise is rebuilt.
# 1: every line break ends a sentence. 2: lines of a paragraph joined across soft breaks.
SENTENCE_SPLITTER = 2


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


# Lines that stand on their own: list items, table rows, headings (Markdown or underlined).
_LIST_ITEM_RE = re.compile(r"^\s*(?:[-*+\u2022\u25aa\u2013]\s+|\(?(?:\d{1,3}|[a-zA-Z]|[ivxIVX]{1,5})[.)]\s+)")
_TABLE_ROW_RE = re.compile(r"\||\t|\S {3,}\S")
_HEADING_RE = re.compile(r"^\s*(?:#{1,6}\s|={3,}\s*$|-{3,}\s*$)")
_SENTENCE_END = ".!?:;\"'\u201d\u2019)]"
_LINE_BREAKS_AS_SPACES = str.maketrans({c: " " for c in "\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"})
_WRAPPED_SHARE = 0.7  # a line at least this share of the block's longest line was wrapped, not ended


def _stands_alone(line: str) -> bool:
    return bool(_LIST_ITEM_RE.match(line) or _TABLE_ROW_RE.search(line.strip()) or _HEADING_RE.match(line))


def _soft_break(line: str, following: str, longest: int) -> bool:
    """Whether the line break between two non-blank lines of one paragraph is only a wrap.

    A break stays hard before and after list items, table rows and headings, and after a short line
    that does not end a sentence and is followed by a capitalised one (a title, a byline, a caption,
    a metadata line); a wrapped line is long or is continued in lower case."""
    head, nxt = line.strip(), following.strip()
    if _stands_alone(following) or is_boilerplate(nxt):
        return False
    if _stands_alone(line):  # a list item continues on an indented line
        return bool(_LIST_ITEM_RE.match(line)) and following[:1].isspace()
    if nxt[:1].islower():
        return True
    if head[-1:] in _SENTENCE_END:
        return True
    return len(head) >= max(40, _WRAPPED_SHARE * longest)


def _paragraph_runs(text: str) -> list[tuple[int, int] | None]:
    """[start, end) spans of runs of lines joined across soft breaks; None marks a boilerplate line
    (it ends a section). A blank line always ends a run."""
    lines: list[tuple[int, str]] = []
    pos = 0
    for line in text.splitlines(keepends=True):
        lines.append((pos, line))
        pos += len(line)
    runs: list[tuple[int, int] | None] = []
    i = 0
    while i < len(lines):
        if not lines[i][1].strip():
            i += 1
            continue
        j = i  # the paragraph: non-blank lines i..j-1
        while j < len(lines) and lines[j][1].strip():
            j += 1
        longest = max(len(line.strip()) for _, line in lines[i:j])
        start = None
        for k in range(i, j):
            at, line = lines[k]
            if is_boilerplate(line.strip()):
                if start is not None:
                    runs.append((start, at))
                    start = None
                runs.append(None)
                continue
            if start is None:
                start = at
            if k + 1 == j or not _soft_break(line, lines[k + 1][1], longest):
                runs.append((start, at + len(line)))
                start = None
        i = j
    return runs


def split_sentences(text: str, max_chars: int = 1000) -> list[list[Span]]:
    """Sentences of `text` grouped into sections; boilerplate lines end a section and are dropped.

    Lines of a paragraph joined across soft breaks (see `_soft_break`) are split by blingfire as one
    text, with each line break read as a space; offsets stay exact, so a sentence that was wrapped
    is the span of the original text with its line breaks inside.
    """
    sections: list[list[Span]] = [[]]
    for run in _paragraph_runs(text):
        if run is None:
            if sections[-1]:
                sections.append([])
            continue
        run_start, run_end = run
        raw = text[run_start:run_end]
        lead = len(raw) - len(raw.lstrip())
        body = raw.strip()
        if not body:
            continue
        # Same length as the original, so blingfire's offsets are the text's offsets.
        joined = body.translate(_LINE_BREAKS_AS_SPACES)
        offset = run_start + lead
        for a, b in sentence_offsets(joined):
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
