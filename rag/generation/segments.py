"""Answers as segments, and the one rendering of them into the plain `answer` string.

An answer is a list of segments: a piece of text (a verbatim quote, a model's sentence, or plain
connective text) and the citations that support it. The plain answer is rendered from them:

    text of segment, neutralised  +  " [n]" for each citation of the segment ("[1][2]" for several)

so every `[n]` in the rendered answer is a marker by construction. Documents carry their own
bracketed numbers ("endothelial cells [2]", "[29, 30]", "[1-3]"); in the rendering, and only there,
a bracket that opens with a digit becomes parentheses: "[29, 30]" reads "(29, 30)". A segment's
`text` keeps the original characters, and a citation's `text` stays exactly `stored_text[start:end]`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

# What a reader could take for a marker: a bracket whose content starts with a digit, such as
# "[2]", "[29, 30]", "[1-3]", "[12a]". Bounded so that a stray "[" never swallows a paragraph.
LITERAL_BRACKET_RE = re.compile(r"\[(\s*\d[^\[\]\n]{0,60})\]")
# A marker of the rendered answer (the eval contract): "[1]", "[2, 3]".
MARKER_RE = re.compile(r"\[(\d+(?:\s*,\s*\d+)*)\]")


@dataclass(frozen=True)
class Segment:
    text: str
    citations: tuple[int, ...] = ()  # citation ids (1-based); empty for connective text


def neutralise(text: str) -> str:
    """Literal bracketed numbers as parentheses, so that they cannot be read as markers. Nested ones
    ("[32, [147] [148]]") are neutralised from the inside out: each pass removes a bracket pair."""
    while True:
        out = LITERAL_BRACKET_RE.sub(r"(\1)", text)
        if out == text:
            return out
        text = out


def markers(citations: Sequence[int]) -> str:
    return "".join(f"[{n}]" for n in citations)


def render_segment(segment: Segment) -> str:
    text = neutralise(segment.text)
    if not segment.citations:
        return text
    return f"{text} {markers(segment.citations)}" if text else markers(segment.citations)


def render(segments: Sequence[Segment]) -> str:
    return "".join(render_segment(s) for s in segments)


def cited_markers(text: str) -> list[int]:
    """Marker numbers in order of appearance, `[1]`, `[2, 3]` alike."""
    out = []
    for m in MARKER_RE.finditer(text):
        out.extend(int(x) for x in m.group(1).split(","))
    return out
