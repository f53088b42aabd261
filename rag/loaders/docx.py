"""Word .docx with python-docx: paragraphs and tables in document order (a table row becomes one
line, "Croissant | 2.50 EUR"), core properties (title, author, dates) as metadata."""
from __future__ import annotations

import io
from typing import Any

from .base import Budget, Loaded, clean_text, json_metadata
from .errors import BrokenDocumentError, DocumentTooLargeError, LoaderError
from .ooxml import check_zip, core_metadata


def _row_text(row: Any) -> str:
    cells, seen = [], set()
    for cell in row.cells:
        if id(cell._tc) in seen:  # a merged cell is returned once per grid column it spans
            continue
        seen.add(id(cell._tc))
        cells.append(" ".join(cell.text.split()))
    return " | ".join(cells) if any(cells) else ""


def load(data: bytes, name: str, budget: Budget, **_: Any) -> Loaded:
    import docx
    from docx.table import Table

    check_zip(data, name, budget)
    try:
        document = docx.Document(io.BytesIO(data))
        lines: list[str] = []
        heading: str | None = None
        chars = 0
        for block in document.iter_inner_content():
            budget.check_time()
            if isinstance(block, Table):
                new = []
                for i, row in enumerate(block.rows):
                    if i % 256 == 255:  # one table can be most of a file: check the budget inside it
                        budget.check_time()
                    text = _row_text(row)
                    if text:
                        new.append(text)
            else:
                text = block.text.strip()
                new = [text] if text else []
                style = block.style.name if block.style is not None else ""
                if new and heading is None and (style.startswith("Heading") or style == "Title"):
                    heading = text
            lines.extend(new)
            chars += sum(len(x) + 1 for x in new)
            if chars > budget.limits.max_chars:
                raise DocumentTooLargeError(f"{name}: over {budget.limits.max_chars} characters of text")
        title, metadata = core_metadata(document.core_properties)
    except LoaderError:
        raise
    except Exception as exc:  # noqa: BLE001 - malformed Office XML raises many kinds; none is a 500
        raise BrokenDocumentError(f"{name}: not a readable .docx ({type(exc).__name__})") from None
    return Loaded(text=clean_text("\n".join(lines)), title=title or heading,
                  metadata={"format": "docx", **json_metadata(metadata)})
