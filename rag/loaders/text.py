"""Plain text: stored exactly as decoded, so citation offsets index the file's own text."""
from __future__ import annotations

from .base import Budget, Loaded, decode_text


def load(data: bytes, name: str, budget: Budget, *, charset: str | None = None) -> Loaded:
    text, encoding = decode_text(data, name, charset)
    return Loaded(text=text, metadata={"format": "text", "encoding": encoding})
