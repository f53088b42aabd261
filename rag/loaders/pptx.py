"""PowerPoint .pptx with python-pptx: each slide's text (text frames, tables as rows), slides as pages
(`metadata.pages` holds where each slide starts), core properties as metadata."""
from __future__ import annotations

import io
from typing import Any

from .base import Budget, Loaded, clean_text, join_pages, json_metadata
from .errors import BrokenDocumentError, DocumentTooLargeError, LoaderError
from .ooxml import check_zip, core_metadata

_MAX_GROUP_DEPTH = 8


def _shape_lines(shape: Any, depth: int = 0) -> list[str]:
    lines: list[str] = []
    if getattr(shape, "shape_type", None) is not None and hasattr(shape, "shapes") and depth < _MAX_GROUP_DEPTH:
        for child in shape.shapes:  # a group
            lines.extend(_shape_lines(child, depth + 1))
    if getattr(shape, "has_table", False):
        for row in shape.table.rows:
            cells = [" ".join(c.text.split()) for c in row.cells]
            if any(cells):
                lines.append(" | ".join(cells))
    elif getattr(shape, "has_text_frame", False):
        lines.extend(p.strip() for p in shape.text_frame.text.splitlines() if p.strip())
    return lines


def load(data: bytes, name: str, budget: Budget, **_: Any) -> Loaded:
    from pptx import Presentation

    check_zip(data, name, budget)
    try:
        deck = Presentation(io.BytesIO(data))
        if len(deck.slides) > budget.limits.max_pages:
            raise DocumentTooLargeError(f"{name}: {len(deck.slides)} slides; the limit is {budget.limits.max_pages}")
        slides: list[str] = []
        first_title: str | None = None
        chars = 0
        for slide in deck.slides:
            budget.check_time()
            lines: list[str] = []
            for shape in slide.shapes:
                lines.extend(_shape_lines(shape))
            title_shape = slide.shapes.title
            if first_title is None and title_shape is not None and title_shape.text.strip():
                first_title = title_shape.text.strip()
            slides.append("\n".join(lines))
            chars += len(slides[-1]) + 2
            if chars > budget.limits.max_chars:
                raise DocumentTooLargeError(f"{name}: over {budget.limits.max_chars} characters of text")
        title, metadata = core_metadata(deck.core_properties)
    except LoaderError:
        raise
    except Exception as exc:  # noqa: BLE001 - malformed Office XML raises many kinds; none is a 500
        raise BrokenDocumentError(f"{name}: not a readable .pptx ({type(exc).__name__})") from None
    text, starts = join_pages([clean_text(s) for s in slides])
    return Loaded(text=text, title=title or first_title,
                  metadata={"format": "pptx", "pages": starts, **json_metadata(metadata)})
