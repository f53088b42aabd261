"""Documents: files, uploads and web pages become `Document`s with stable ids, titles, metadata and
the exact stored text that citations index into. Parsing per format lives in `rag.loaders`.

Sources are shown relative to what was named: `rag ingest docs/` stores `docs/a.pdf`, `rag ingest .`
stores `a.pdf`, `rag ingest /srv/corpus` stores `corpus/a.pdf`: never an absolute path of the
machine. Each file document also carries `metadata["origin"]`, its absolute path (a URL for web
pages): the stable identity by which ingest recognises the same file named from elsewhere.
"""
from __future__ import annotations

import bisect
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from .errors import DocumentError
from .loaders import (FORMATS, DocumentTooLargeError, Limits, LoaderError, MissingFileError, UnreadableFileError,
                      clean_text, decode_text, format_for, load_bytes)
from .loaders.html import html_to_text

__all__ = ["Document", "LoadResult", "SkippedFile", "decode_text", "document_id_for", "html_to_text",
           "is_url", "load_file", "load_paths", "make_document", "page_of", "same_document"]

SUPPORTED_SUFFIXES = set(FORMATS)
MAX_FILE_BYTES = Limits().max_bytes
_TITLE_CHARS = 200
# Reasons that mean something went wrong (exit code 1), as opposed to files that are simply not
# documents (an unsupported type, an empty file, a link leaving the tree) met while walking a directory.
FAILURE_KINDS = frozenset({"broken", "too large", "unreadable", "not found", "fetch failed", "duplicate source"})


@dataclass(frozen=True)
class Document:
    id: str
    source: str
    title: str
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def chars(self) -> int:
        return len(self.text)

    @property
    def content_hash(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()


def same_document(a: Document, b: Document) -> bool:
    """Whether storing `b` over `a` would change nothing."""
    return (a.id, a.text, a.title, a.source, a.metadata) == (b.id, b.text, b.title, b.source, b.metadata)


def page_of(doc: Document, offset: int) -> int | None:
    """1-based page (PDF) or slide (pptx) holding `offset`, from the page starts in `metadata.pages`."""
    pages = doc.metadata.get("pages") if isinstance(doc.metadata, dict) else None
    if not isinstance(pages, list) or not pages:
        return None
    return max(1, bisect.bisect_right(pages, offset))


@dataclass(frozen=True)
class SkippedFile:
    path: str  # as shown to users: relative to what was named, or the URL
    reason: str
    kind: str = "broken"  # unsupported type, binary, empty, broken, too large, unreadable, not found, ...
    failed: bool = True  # counts as a failure (non-zero exit) rather than a file that is not a document


@dataclass
class LoadResult:
    documents: list[Document] = field(default_factory=list)
    skipped: list[SkippedFile] = field(default_factory=list)

    @property
    def failed(self) -> list[SkippedFile]:
        return [s for s in self.skipped if s.failed]


def document_id_for(source: str) -> str:
    """Stable id of a file-backed document: a hash of its source as shown to users."""
    return hashlib.sha256(source.encode("utf-8")).hexdigest()[:16]


def make_document(text: str, *, source: str, title: str | None = None, id: str | None = None,
                  metadata: dict[str, Any] | None = None) -> Document:
    """Build a document from text already in memory (used by loaders, evaluation and the API)."""
    if not text.strip():
        raise DocumentError(f"{source}: document is empty")
    return Document(
        id=id or document_id_for(source),
        source=source,
        title=(title or first_line_title(text) or Path(source).stem)[:_TITLE_CHARS],
        text=text,
        metadata=dict(metadata or {}),
    )


def first_line_title(text: str) -> str:
    for line in text.splitlines():
        line = line.strip().lstrip("#").strip()
        if line:
            return line[:_TITLE_CHARS]
    return ""


def is_url(value: str | Path) -> bool:
    return isinstance(value, str) and value.lower().startswith(("http://", "https://"))


def display_source(path: Path) -> str:
    """A path as a label: relative to the working directory when given so, else its name."""
    return _root_label(path) or "."


def _root_label(path: Path) -> str:
    norm = os.path.normpath(str(path))
    if not path.is_absolute() and norm != ".." and not norm.startswith("../"):
        return "" if norm == "." else Path(norm).as_posix()
    return Path(os.path.abspath(path)).name  # absolute or outside: the name only, no machine path


def _origin(path: Path) -> str:
    """The file's absolute path, by its own name (a symlink stays the link, not its target)."""
    return str(Path(os.path.abspath(path)).parent.resolve() / path.name)


def load_file(path: Path, *, source: str | None = None, limits: Limits | None = None) -> Document:
    """One file as a document. Raises `LoaderError` (with a `kind`) when it cannot be one."""
    limits = limits or Limits()
    source = source or display_source(path)
    kind = format_for(source)
    try:
        size = path.stat().st_size
        if size > limits.max_bytes:
            raise DocumentTooLargeError(f"{source}: {size} bytes is over the {limits.max_bytes} byte limit")
        data = path.read_bytes()
    except OSError as exc:
        error = MissingFileError if isinstance(exc, FileNotFoundError) else UnreadableFileError
        raise error(f"{source}: cannot be read ({exc.strerror or exc})") from None
    loaded = load_bytes(data, source, kind=kind, limits=limits)
    # The id comes from the file's absolute path (its identity), not from the label: the same file
    # ingested from two working directories, or under two directory names, is one document.
    origin = _origin(path)
    return make_document(loaded.text, source=source, title=loaded.title, id=document_id_for(origin),
                         metadata={**loaded.metadata, "origin": origin})


@dataclass(frozen=True)
class _Entry:
    path: Path
    source: str
    explicit: bool  # named on the command line (not found while walking a directory)
    problem: SkippedFile | None = None


def _walk(root: Path, label: str) -> Iterator[_Entry]:
    """Files under a directory in a stable order. Hidden files and directories are ignored; symbolic
    links are followed only when they stay inside the directory (a link is recorded by its own path)."""
    top = root.resolve()
    for here, dirs, files in os.walk(root):
        base = Path(here)
        rel_dir = base.relative_to(root)
        keep = []
        for d in sorted(dirs):
            if d.startswith("."):
                continue
            if (base / d).is_symlink():
                shown = _join(label, rel_dir / d)
                yield _Entry(base / d, shown, False, SkippedFile(shown, "symbolic link to a directory (not followed)",
                                                                 "symlink", failed=False))
                continue
            keep.append(d)
        dirs[:] = keep
        for f in sorted(files):
            if f.startswith("."):
                continue
            p = base / f
            shown = _join(label, rel_dir / f)
            if p.is_symlink():
                try:
                    target = p.resolve(strict=True)
                except (OSError, RuntimeError):
                    yield _Entry(p, shown, False, SkippedFile(shown, "broken symbolic link", "not found"))
                    continue
                if not target.is_relative_to(top):
                    yield _Entry(p, shown, False, SkippedFile(
                        shown, "symbolic link to a file outside the directory (not followed)", "symlink", failed=False))
                    continue
            yield _Entry(p, shown, False)


def _join(label: str, rel: Path) -> str:
    rel_s = rel.as_posix()
    return f"{label}/{rel_s}" if label and rel_s != "." else (rel_s if rel_s != "." else label)


def _entries(paths: Iterable[Path]) -> Iterator[_Entry]:
    for path in paths:
        label = _root_label(path)
        if path.is_dir():  # a directory named on the command line is walked, even through a link
            yield from _walk(path, label)
        elif path.is_absolute() or not label:  # outside the working directory: "<its directory>/<name>",
            parent = Path(os.path.abspath(path)).parent.name  # as when that directory is named itself
            yield _Entry(path, f"{parent}/{path.name}" if parent else path.name, True)
        else:
            yield _Entry(path, label, True)


def load_paths(paths: Iterable[str | Path], *, limits: Limits | None = None, fetch_options=None,
               known: Callable[[str], Document | None] | None = None) -> LoadResult:
    """Load every document under `paths` (files, directories, http(s) URLs). Whatever cannot be loaded
    is reported by name with its reason and skipped; the rest goes on.

    `known` looks up a stored document by id: for URLs it supplies the validators (ETag,
    Last-Modified) that make re-fetching an unchanged page cost one 304."""
    result = LoadResult()
    seen: dict[str, str] = {}  # id -> origin
    items = list(paths)
    urls = [p for p in items if is_url(p)]
    files = [Path(p) for p in items if not is_url(p)]
    for entry in _entries(files):
        if entry.problem is not None:
            result.skipped.append(entry.problem)
            continue
        if not entry.path.exists() and not entry.path.is_symlink():
            result.skipped.append(SkippedFile(entry.source, "no such file or directory", "not found"))
            continue
        try:
            doc = load_file(entry.path, source=entry.source, limits=limits)
        except LoaderError as exc:
            failed = entry.explicit or exc.kind in FAILURE_KINDS
            result.skipped.append(SkippedFile(entry.source, _reason(exc), exc.kind, failed=failed))
            continue
        except DocumentError as exc:
            result.skipped.append(SkippedFile(entry.source, _reason(exc), "empty", failed=entry.explicit))
            continue
        _add(result, seen, doc)
    for url in urls:
        from .fetch import FetchOptions, load_url

        try:
            doc, _unchanged = load_url(str(url), options=fetch_options or FetchOptions(), limits=limits, known=known)
        except LoaderError as exc:
            result.skipped.append(SkippedFile(str(url), _reason(exc), exc.kind, failed=True))
            continue
        _add(result, seen, doc)
    return result


def _add(result: LoadResult, seen: dict[str, str], doc: Document) -> bool:
    origin = doc.metadata.get("origin", doc.source)
    if doc.id in seen:
        if seen[doc.id] != origin:  # two files shown under one source: say so rather than drop one
            result.skipped.append(SkippedFile(doc.source, "another file named earlier has the same source",
                                              "duplicate source"))
        return False
    seen[doc.id] = origin
    result.documents.append(doc)
    return True


def _reason(exc: Exception) -> str:
    return clean_text(str(exc)).split(": ", 1)[-1]


def limits_for(settings, *, max_bytes: int | None = None) -> Limits:
    """Parser bounds from settings (`max_bytes`: the upload limit for the API, the file limit for ingest)."""
    return Limits(max_bytes=max_bytes or MAX_FILE_BYTES, max_chars=settings.max_document_chars,
                  max_pages=settings.max_pages, max_decompressed_bytes=settings.max_decompressed_bytes,
                  time_budget_s=settings.parse_timeout_s)


def fetch_options_for(settings):
    from .fetch import FetchOptions

    return FetchOptions(allow_private=settings.fetch_allow_private, timeout_s=settings.fetch_timeout_s,
                        max_bytes=settings.max_upload_bytes)
