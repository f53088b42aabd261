"""Markdown: stored as written (citations index the file's text after any front matter); YAML front
matter becomes metadata; the title is the front matter's `title`, else the first heading."""
from __future__ import annotations

import re

import yaml

from .base import RESERVED_KEYS, Budget, Loaded, decode_text, json_metadata

# `---` on the first line, YAML, then `---` or `...` alone on a line (Jekyll, Hugo, Obsidian, MkDocs).
_FRONT_MATTER = re.compile(r"\A---[ \t]*\r?\n(.*?)(?:\r?\n)?^(?:---|\.\.\.)[ \t]*(?:\r?\n|\Z)", re.S | re.M)
_MAX_FRONT_MATTER = 64 * 1024
_ATX_HEADING = re.compile(r"^ {0,3}#{1,6}[ \t]+(.+?)[ \t#]*$", re.M)
_SETEXT_HEADING = re.compile(r"^ {0,3}(\S.*?)[ \t]*\r?\n {0,3}=+[ \t]*$", re.M)


def front_matter(text: str) -> tuple[dict, int]:
    """(metadata, where the body starts). Text without valid front matter has none: it stays text."""
    m = _FRONT_MATTER.match(text)
    if not m or m.end() > _MAX_FRONT_MATTER:
        return {}, 0
    raw = m.group(1)
    try:
        # Aliases are refused: `&a [*a, *a, ...]` nests references that expand exponentially once
        # serialised ("billion laughs"); front matter never needs them.
        if any(isinstance(ev, yaml.AliasEvent) for ev in yaml.parse(raw, Loader=yaml.SafeLoader)):
            return {}, 0
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        return {}, 0
    if not isinstance(value, dict):
        return {}, 0
    return json_metadata(value), m.end()


def first_heading(text: str) -> str | None:
    found = [m for m in (_ATX_HEADING.search(text), _SETEXT_HEADING.search(text)) if m]
    if not found:
        return None
    return min(found, key=lambda m: m.start()).group(1).strip() or None


def load(data: bytes, name: str, budget: Budget, *, charset: str | None = None) -> Loaded:
    text, encoding = decode_text(data, name, charset)
    meta, body_start = front_matter(text)
    metadata: dict = {"format": "markdown", "encoding": encoding}
    title = meta.pop("title", None) if meta else None
    if meta:
        metadata.update({k: v for k, v in meta.items() if k not in RESERVED_KEYS})
    if body_start:
        metadata["body_offset"] = body_start  # file offset = body_offset + citation offset
    body = text[body_start:]
    title = str(title) if isinstance(title, (str, int, float)) and str(title).strip() else first_heading(body)
    return Loaded(text=body, title=title, metadata=metadata)
