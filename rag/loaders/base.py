"""Shared pieces of the loaders: bounds, the running budget, the result type and text hygiene."""
from __future__ import annotations

import datetime as _dt
import math
import re
import time
from dataclasses import dataclass, field
from typing import Any

from .errors import BinaryContentError, DocumentTooLargeError

MiB = 1024 * 1024
# Metadata keys the service sets itself; a file's own properties (front matter, ...) cannot override them.
RESERVED_KEYS = frozenset({"format", "encoding", "pages", "origin", "body_offset", "filename", "url",
                           "http_etag", "http_last_modified", "content_type"})


@dataclass(frozen=True)
class Limits:
    """Bounds on every parser, so that one file costs bounded time and memory whatever it holds."""

    max_bytes: int = 50 * MiB  # the file as stored or sent
    max_chars: int = 2_000_000  # text extracted
    max_pages: int = 2_000  # PDF pages, PowerPoint slides
    max_stream_bytes: int = 16 * MiB  # one decompressed PDF stream
    max_decompressed_bytes: int = 200 * MiB  # all decompressed PDF streams, or a docx/pptx zip's members
    max_zip_entries: int = 10_000
    max_html_bytes: int = 16 * MiB  # main-content extraction is the slowest per byte
    time_budget_s: float = 60.0  # checked between pages, paragraphs and slides


class Budget:
    """Time and decompressed bytes spent on one file, checked by loaders as they go."""

    def __init__(self, limits: Limits, name: str):
        self.limits = limits
        self.name = name
        self.deadline = time.monotonic() + limits.time_budget_s
        self.decompressed = 0

    def check_time(self) -> None:
        if time.monotonic() > self.deadline:
            raise DocumentTooLargeError(f"{self.name}: parsing took longer than {self.limits.time_budget_s:g} s")

    def add_decompressed(self, n: int) -> None:
        self.decompressed += n
        if self.decompressed > self.limits.max_decompressed_bytes:
            raise DocumentTooLargeError(f"{self.name}: over {self.limits.max_decompressed_bytes} bytes once "
                                        "decompressed")


@dataclass
class Loaded:
    """What a loader extracted: the text to store (citations index into it), a title, metadata."""

    text: str
    title: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


_SURROGATES = re.compile("[\ud800-\udfff]")
_NUL = re.compile("\x00")


def clean_text(text: str) -> str:
    """Text any JSON/UTF-8 consumer can carry: lone surrogates (a PDF can decode to U+D800) become
    U+FFFD and NUL characters go. Lengths can change, so call it before offsets are recorded."""
    text = _SURROGATES.sub("\ufffd", text)
    return _NUL.sub("", text) if "\x00" in text else text


def decode_text(data: bytes, name: str, hint: str | None = None) -> tuple[str, str]:
    """Decode bytes: the declared charset if any, else UTF-8 (a BOM is dropped), else Windows-1252,
    else Latin-1. Returns (text, encoding). Binary data (NUL bytes) is refused."""
    if b"\x00" in data[:8192]:
        raise BinaryContentError(f"{name}: looks binary (contains NUL bytes)")
    candidates = ["utf-8-sig", "cp1252", "latin-1"]
    if hint:
        candidates.insert(0, hint)
    for encoding in candidates:
        try:
            text = data.decode(encoding)
        except (UnicodeDecodeError, LookupError):
            continue
        return clean_text(text), "utf-8" if encoding in ("utf-8-sig", "utf-8", "utf8") else encoding
    raise BinaryContentError(f"{name}: cannot be decoded as text")  # unreachable: latin-1 decodes anything


_MAX_META_STR = 1000
_MAX_META_ITEMS = 100
_MAX_META_DEPTH = 3


def json_metadata(value: Any, depth: int = 0) -> Any:
    """A metadata value as bounded, JSON-safe data: dates become ISO strings, deep or odd values
    strings, long strings and collections are cut. Front matter and file properties are outside input."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value if abs(value) < 2 ** 53 else str(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (_dt.datetime, _dt.date, _dt.time)):
        return value.isoformat()
    if isinstance(value, str):
        return clean_text(value)[:_MAX_META_STR]
    if depth < _MAX_META_DEPTH and isinstance(value, (list, tuple)):
        return [json_metadata(v, depth + 1) for v in list(value)[:_MAX_META_ITEMS]]
    if depth < _MAX_META_DEPTH and isinstance(value, dict):
        return {clean_text(str(k))[:200]: json_metadata(v, depth + 1)
                for k, v in list(value.items())[:_MAX_META_ITEMS]}
    return clean_text(str(value))[:_MAX_META_STR]


def check_size(data: bytes, limit: int, name: str) -> None:
    if len(data) > limit:
        raise DocumentTooLargeError(f"{name}: {len(data)} bytes is over the {limit} byte limit")


def join_pages(pages: list[str]) -> tuple[str, list[int]]:
    """Pages joined by a blank line, with the offset where each page starts in the joined text."""
    starts, parts, pos = [], [], 0
    for i, page in enumerate(pages):
        if i:
            parts.append("\n\n")
            pos += 2
        starts.append(pos)
        parts.append(page)
        pos += len(page)
    return "".join(parts), starts
