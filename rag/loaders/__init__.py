"""Loaders: bytes of a file (from disk, an upload or a URL) to a document's text, title and metadata.

One module per format, the same everywhere (`rag ingest`, `POST /documents` uploads and URLs):

| suffix | content type | module |
|---|---|---|
| .txt | text/plain | text (stored exactly as decoded) |
| .md, .markdown | text/markdown | markdown (front matter -> metadata) |
| .html, .htm, .xhtml | text/html, application/xhtml+xml | html (main content, tables as rows) |
| .pdf | application/pdf | pdf (pypdf; page offsets in metadata.pages) |
| .docx | application/vnd.openxmlformats-officedocument.wordprocessingml.document | docx |
| .pptx | application/vnd.openxmlformats-officedocument.presentationml.presentation | pptx |

Every loader is bounded (`Limits`): bytes in, characters out, pages, decompressed bytes, time.
"""
from __future__ import annotations

from importlib import import_module
from typing import Callable

from .base import RESERVED_KEYS, Budget, Limits, Loaded, check_size, clean_text, decode_text
from .errors import (BinaryContentError, BrokenDocumentError, DocumentTooLargeError, EmptyDocumentError,
                     LoaderError, MissingFileError, UnreadableFileError, UnsupportedFormatError)

__all__ = ["FORMATS", "CONTENT_TYPES", "Limits", "Loaded", "LoaderError", "UnsupportedFormatError",
           "BinaryContentError", "BrokenDocumentError", "DocumentTooLargeError", "EmptyDocumentError",
           "MissingFileError", "UnreadableFileError",
           "RESERVED_KEYS", "clean_text", "decode_text", "format_for", "load_bytes", "supported_suffixes"]

# suffix -> format name (= module name)
FORMATS: dict[str, str] = {
    ".txt": "text", ".text": "text", ".md": "markdown", ".markdown": "markdown",
    ".html": "html", ".htm": "html", ".xhtml": "html", ".pdf": "pdf", ".docx": "docx", ".pptx": "pptx",
}
CONTENT_TYPES: dict[str, str] = {
    "text/plain": "text", "text/markdown": "markdown", "text/x-markdown": "markdown",
    "text/html": "html", "application/xhtml+xml": "html", "application/pdf": "pdf",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "docx",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation": "pptx",
}


def supported_suffixes() -> list[str]:
    return sorted(FORMATS)


def format_for(name: str, content_type: str | None = None) -> str:
    """The format of a file by its content type (when given and known), else by its name's suffix."""
    if content_type:
        kind = CONTENT_TYPES.get(content_type.split(";")[0].strip().lower())
        if kind:
            return kind
    base = name.rsplit("/", 1)[-1]
    suffix = "." + base.rsplit(".", 1)[-1].lower() if "." in base else ""
    kind = FORMATS.get(suffix)
    if kind is None:
        shown = f"content type {content_type.split(';')[0]}" if content_type else f"file type {suffix or '(none)'}"
        raise UnsupportedFormatError(f"{name}: unsupported {shown}; supported: {', '.join(supported_suffixes())}")
    return kind


def _loader(kind: str) -> Callable[..., Loaded]:
    return import_module(f"{__name__}.{kind}").load  # parsers are imported only when a format is used


def load_bytes(data: bytes, name: str, *, kind: str | None = None, charset: str | None = None,
               limits: Limits | None = None) -> Loaded:
    """Parse one file. Raises a `LoaderError` (its `kind` says why: unsupported type, binary, empty,
    broken, too large) for anything that cannot become a document; never anything else on bad input."""
    limits = limits or Limits()
    kind = kind or format_for(name)
    check_size(data, limits.max_bytes, name)
    budget = Budget(limits, name)
    try:
        loaded = _loader(kind)(data, name, budget, charset=charset)
    except RecursionError:  # deeply nested markup or objects
        raise BrokenDocumentError(f"{name}: nested too deeply to parse") from None
    if len(loaded.text) > limits.max_chars:
        raise DocumentTooLargeError(f"{name}: {len(loaded.text)} characters of text; the limit is {limits.max_chars}")
    if not loaded.text.strip():
        raise EmptyDocumentError(f"{name}: no text in the file" if data.strip() else f"{name}: file is empty")
    if loaded.title is not None:
        loaded.title = clean_text(" ".join(loaded.title.split()))[:200] or None
    return loaded
