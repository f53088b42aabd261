"""Documents: load files into `Document`s with stable ids, titles and the exact stored text."""
from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from .errors import DocumentError

TEXT_SUFFIXES = {".txt", ".md", ".markdown"}
HTML_SUFFIXES = {".html", ".htm"}
SUPPORTED_SUFFIXES = TEXT_SUFFIXES | HTML_SUFFIXES
MAX_FILE_BYTES = 50 * 1024 * 1024
_TITLE_CHARS = 200


@dataclass(frozen=True)
class Document:
    id: str
    source: str
    title: str
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)
    # Where a file-backed document was read from (its resolved absolute path): the identity that
    # `rag ingest` removes by. Stored, never shown by the API. None for API documents and uploads.
    origin: str | None = None

    @property
    def chars(self) -> int:
        return len(self.text)

    @property
    def content_hash(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()


def same_document(a: Document, b: Document) -> bool:
    """Whether storing `b` over `a` would change nothing."""
    return ((a.id, a.text, a.title, a.source, a.metadata, a.origin)
            == (b.id, b.text, b.title, b.source, b.metadata, b.origin))


@dataclass(frozen=True)
class SkippedFile:
    path: str
    reason: str


@dataclass
class LoadResult:
    documents: list[Document] = field(default_factory=list)
    skipped: list[SkippedFile] = field(default_factory=list)


def document_id_for(source: str) -> str:
    """Stable id of a file-backed document: a hash of its source path as shown to users."""
    return hashlib.sha256(source.encode("utf-8")).hexdigest()[:16]


def make_document(text: str, *, source: str, title: str | None = None, id: str | None = None,
                  metadata: dict[str, Any] | None = None, origin: str | None = None) -> Document:
    """Build a document from text already in memory (used by loaders, evaluation and the API)."""
    if not text.strip():
        raise DocumentError(f"{source}: document is empty")
    return Document(
        id=id or document_id_for(source),
        source=source,
        title=(title or first_line_title(text) or Path(source).stem)[:_TITLE_CHARS],
        text=text,
        metadata=dict(metadata or {}),
        origin=origin,
    )


def first_line_title(text: str) -> str:
    for line in text.splitlines():
        line = line.strip().lstrip("#").strip()
        if line:
            return line[:_TITLE_CHARS]
    return ""


def decode_text(data: bytes, name: str) -> tuple[str, str]:
    """Decode file bytes: UTF-8 (a BOM is dropped), else Windows-1252, else Latin-1.

    Returns (text, encoding). Binary data (NUL bytes) is refused.
    """
    if b"\x00" in data[:8192]:
        raise DocumentError(f"{name}: looks binary (contains NUL bytes)")
    for encoding in ("utf-8-sig", "cp1252", "latin-1"):
        try:
            return data.decode(encoding), "utf-8" if encoding == "utf-8-sig" else encoding
        except UnicodeDecodeError:
            continue
    raise DocumentError(f"{name}: cannot be decoded as text")  # unreachable: latin-1 decodes anything


def html_to_text(markup: str) -> tuple[str, str]:
    """Visible text of an HTML page and its <title>, with a real parser."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(markup, "lxml")
    title = soup.title.get_text(" ", strip=True) if soup.title else ""
    for tag in soup(["script", "style", "noscript", "template", "head", "svg"]):
        tag.decompose()
    raw = soup.get_text("\n")
    lines = [re.sub(r"[ \t\u00a0]+", " ", line).strip() for line in raw.splitlines()]
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
    return text, title


def display_source(path: Path) -> str:
    """The path as users see it: relative to the working directory when inside it."""
    resolved = path.resolve()
    try:
        return resolved.relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return resolved.as_posix()


def load_file(path: Path) -> Document:
    name = str(path)
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise DocumentError(f"{name}: unsupported file type {suffix or '(none)'}; "
                            f"supported: {', '.join(sorted(SUPPORTED_SUFFIXES))}")
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise DocumentError(f"{name}: {size} bytes is over the {MAX_FILE_BYTES} byte limit")
        data = path.read_bytes()
    except OSError as exc:
        raise DocumentError(f"{name}: cannot be read ({exc.strerror or exc})") from exc
    text, encoding = decode_text(data, name)
    source = display_source(path)
    # The id comes from the file's absolute path, so the same file ingested from two working
    # directories is one document.
    origin = path.resolve().as_posix()
    identity = dict(source=source, id=document_id_for(origin), origin=origin)
    metadata: dict[str, Any] = {"encoding": encoding}
    if suffix in HTML_SUFFIXES:
        text, title = html_to_text(text)
        metadata["format"] = "html"
        return make_document(text, title=title or None, metadata=metadata, **identity)
    metadata["format"] = "markdown" if suffix != ".txt" else "text"
    return make_document(text, metadata=metadata, **identity)


def iter_files(paths: Iterable[Path]) -> Iterator[Path]:
    """Files named, and supported files under directories named, in a stable order."""
    for path in paths:
        if path.is_dir():
            for root, dirs, files in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for f in sorted(files):
                    p = Path(root) / f
                    if p.suffix.lower() in SUPPORTED_SUFFIXES and not f.startswith("."):
                        yield p
        else:
            yield path


def load_paths(paths: Iterable[str | Path]) -> LoadResult:
    """Load every document under `paths`; bad files are reported by name and skipped."""
    result = LoadResult()
    seen: set[str] = set()
    for path in iter_files(Path(p) for p in paths):
        if not path.exists():
            result.skipped.append(SkippedFile(str(path), "no such file or directory"))
            continue
        try:
            doc = load_file(path)
        except DocumentError as exc:
            result.skipped.append(SkippedFile(str(path), str(exc).split(": ", 1)[-1]))
            continue
        if doc.id in seen:
            continue
        seen.add(doc.id)
        result.documents.append(doc)
    return result
