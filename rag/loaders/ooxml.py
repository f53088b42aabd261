"""What .docx and .pptx files share: they are zip archives, checked before any parser opens them."""
from __future__ import annotations

import io
import zipfile

from .base import Budget
from .errors import BrokenDocumentError, DocumentTooLargeError

MAX_XML_BYTES = 32 * 1024 * 1024


def check_zip(data: bytes, name: str, budget: Budget) -> None:
    """Refuse zip bombs from the central directory alone: too many members, or more uncompressed bytes
    than the budget. (Python's zipfile never inflates a member past its declared size, so declared
    sizes bound what a parser can read.)"""
    limits = budget.limits
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise BrokenDocumentError(f"{name}: not a readable Office file ({exc})") from None
    if len(members) > limits.max_zip_entries:
        raise DocumentTooLargeError(f"{name}: {len(members)} parts in the archive; the limit is "
                                    f"{limits.max_zip_entries}")
    total = sum(m.file_size for m in members)
    if total > limits.max_decompressed_bytes:
        raise DocumentTooLargeError(f"{name}: {total} bytes once decompressed; the limit is "
                                    f"{limits.max_decompressed_bytes}")
    xml = sum(m.file_size for m in members if m.filename.lower().endswith((".xml", ".rels")))
    if xml > MAX_XML_BYTES:  # parsed into lxml trees, ~10x their size in memory
        raise DocumentTooLargeError(f"{name}: {xml} bytes of XML once decompressed; the limit is {MAX_XML_BYTES}")
    budget.add_decompressed(total)


def core_metadata(props) -> tuple[str | None, dict]:
    """Title and author/date/subject/keywords from an Office file's core properties."""
    out: dict = {}
    for key, attr in (("author", "author"), ("subject", "subject"), ("keywords", "keywords"),
                      ("category", "category")):
        value = getattr(props, attr, None)
        if isinstance(value, str) and value.strip():
            out[key] = value.strip()
    for key, attr in (("date", "created"), ("modified", "modified")):
        value = getattr(props, attr, None)
        if value is not None:
            out[key] = value.isoformat()
    title = props.title.strip() if isinstance(props.title, str) and props.title.strip() else None
    return title, out
