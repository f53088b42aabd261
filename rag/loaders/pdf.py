"""PDF with pypdf: text page by page, each page's start offset in `metadata.pages` (so a citation's
page is derivable), and the document information's title/author/date as metadata.

Decompression is bounded per stream through pypdf's configuration (scoped to this thread) and in
total through the budget; pages and time are bounded too. A decompression bomb (small file, huge
Flate streams) is refused at its first oversized stream, before the memory is spent."""
from __future__ import annotations

import io
from typing import Any

from .base import Budget, Loaded, clean_text, join_pages, json_metadata
from .errors import BrokenDocumentError, DocumentTooLargeError, LoaderError


def _configuration(budget: Budget) -> dict[str, int]:
    per_stream = budget.limits.max_stream_bytes
    return {
        "zlib_maximum_output_length": per_stream, "lzw_maximum_output_length": per_stream,
        "run_length_maximum_output_length": per_stream, "brotli_maximum_output_length": per_stream,
        "jbig2_maximum_output_length": per_stream, "array_based_stream_maximum_output_length": per_stream,
        "maximum_declared_stream_length": per_stream, "image_maximum_buffer_size": per_stream,
        "stream_decoding_work_maximum_length": 4 * per_stream, "xfa_decoding_work_maximum_length": 4 * per_stream,
        "page_tree_maximum_entries": 4 * budget.limits.max_pages,
        # Operands and operators parsed per content stream: bounds the objects (memory) one page makes.
        "stream_parsing_work_maximum_count": 300_000,  # ~2 s and ~60 MB at most; dense text pages use ~20k
    }


def _metadata(reader: Any) -> tuple[str | None, dict[str, Any]]:
    out: dict[str, Any] = {}
    try:
        info = reader.metadata
    except Exception:  # noqa: BLE001 - a damaged info dictionary only costs the metadata
        return None, out
    if not info:
        return None, out
    title = info.title if isinstance(info.title, str) and info.title.strip() else None
    for key, attr in (("author", "author"), ("subject", "subject"), ("keywords", "keywords")):
        value = getattr(info, attr, None)
        if isinstance(value, str) and value.strip():
            out[key] = json_metadata(value.strip())
    try:
        created = info.creation_date
    except Exception:  # noqa: BLE001 - unparsable dates are common in real PDFs
        created = None
    if created is not None:
        out["date"] = created.isoformat()
    return (clean_text(title.strip()) if title else None), out


def load(data: bytes, name: str, budget: Budget, **_: Any) -> Loaded:
    from pypdf import PdfReader, apply_configuration
    from pypdf.errors import LimitReachedError

    limits = budget.limits
    with apply_configuration(**_configuration(budget)):
        try:
            reader = PdfReader(io.BytesIO(data))
            if reader.is_encrypted and not reader.decrypt(""):
                raise BrokenDocumentError(f"{name}: encrypted PDFs are not supported")
            count = len(reader.pages)
            if count > limits.max_pages:
                raise DocumentTooLargeError(f"{name}: {count} pages; the limit is {limits.max_pages}")
            pages: list[str] = []
            chars = 0
            for page in reader.pages:
                budget.check_time()
                contents = page.get_contents()
                if contents is not None:
                    budget.add_decompressed(len(contents.get_data()))
                # Called for every operator: a page too slow to extract is stopped inside, not after.
                text = clean_text((page.extract_text(visitor_operand_before=lambda *_: budget.check_time())
                                   or "").strip())
                chars += len(text)
                if chars > limits.max_chars:
                    raise DocumentTooLargeError(f"{name}: over {limits.max_chars} characters of text")
                pages.append(text)
            title, metadata = _metadata(reader)
        except LoaderError:
            raise
        except LimitReachedError as exc:
            raise DocumentTooLargeError(f"{name}: refused, over a parsing limit (a stream decompresses to more "
                                        f"than {limits.max_stream_bytes} bytes, or holds too many operators): "
                                        f"{exc}") from None
        except MemoryError:
            raise DocumentTooLargeError(f"{name}: too large to parse") from None
        except Exception as exc:  # noqa: BLE001 - pypdf raises many kinds on malformed files; none is a 500
            raise BrokenDocumentError(f"{name}: not a readable PDF ({type(exc).__name__})") from None
    text, starts = join_pages(pages)
    return Loaded(text=text, title=title, metadata={"format": "pdf", "pages": starts, **metadata})
