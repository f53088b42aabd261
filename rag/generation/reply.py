"""Parse an LLM reply that cites passages by source label (`[S1]`, `[S2, S3]`) into segments.

The prompt labels passages `S1..Sk`, a form that the passages' own bracketed numbers ("[2]",
"[29, 30]") cannot be mistaken for. A label naming a passage becomes a citation, numbered by first
use; a label naming none is dropped; any other bracketed number in the reply is literal text (the
model copied it from a passage) and is neutralised by the rendering. The parser works incrementally
so that a streamed answer and the final one are the same text.
"""
from __future__ import annotations

import re

from .segments import Segment, markers, neutralise

# "[S1]", "[S1, S2]", "[S1; s2]", "[S1,2]" (a bare number after a label continues the list).
LABEL_RE = re.compile(r"\[\s*[Ss]\s*(\d+)((?:\s*[,;]\s*(?:[Ss]\s*)?\d+)*)\s*\]")
_LABEL_NUMBER_RE = re.compile(r"\d+")
_MAX_OPEN = 64  # an unclosed "[" longer ago than this is text, not a marker being written


class ReplyParser:
    def __init__(self, passages: int):
        self.passages = passages
        self.numbering: dict[int, int] = {}  # passage number -> citation number
        self.segments: list[Segment] = []
        self._open = ""  # text of the segment being written (raw, not yet closed by a label)
        self._pending = ""  # received but not yet safe to emit
        self._last_cited = False  # nothing but white space since the last accepted label

    def feed(self, delta: str) -> str:
        """Rendered text that is safe to emit now. A possibly unfinished bracket, and white space
        that may precede a label, are held back."""
        self._pending += delta
        cut = len(self._pending)
        opened: list[int] = []  # unclosed "[" (the outermost first: nested brackets are held whole)
        for i in range(max(0, len(self._pending) - _MAX_OPEN), len(self._pending)):
            if self._pending[i] == "[":
                opened.append(i)
            elif self._pending[i] == "]" and opened:
                opened.pop()
        if opened:
            cut = opened[0]
        while cut > 0 and self._pending[cut - 1].isspace():
            cut -= 1
        ready, self._pending = self._pending[:cut], self._pending[cut:]
        return self._consume(ready)

    def finish(self) -> str:
        """The rest of the rendered text; closes the last segment."""
        rest, self._pending = self._pending, ""
        out = self._consume(rest.rstrip())
        if self._open:
            self.segments.append(Segment(self._open))
            self._open = ""
        return out

    def _consume(self, text: str) -> str:
        out: list[str] = []
        pos = 0
        for m in LABEL_RE.finditer(text):
            before = text[pos:m.start()]
            pos = m.end()
            numbers = [int(x) for x in _LABEL_NUMBER_RE.findall(m.group(0))]
            cited = []
            for n in numbers:
                if 1 <= n <= self.passages:
                    self.numbering.setdefault(n, len(self.numbering) + 1)
                    if self.numbering[n] not in cited:
                        cited.append(self.numbering[n])
            if not cited:  # names no passage: dropped, with the white space before it
                before = before.rstrip()
                self._open += before
                self._last_cited = self._last_cited and not before
                out.append(neutralise(before))
                continue
            body = (self._open + before).rstrip()
            if not body.strip() and self._last_cited and self.segments:
                # "[S1][S2]" or "[S1] [S2]": more citations for the same text
                last = self.segments[-1]
                added = tuple(c for c in cited if c not in last.citations)
                self.segments[-1] = Segment(last.text, last.citations + added)
                out.append(markers(added))
            else:
                written = neutralise(before.rstrip())
                self.segments.append(Segment(body, tuple(cited)))
                out.append(f"{written} {markers(cited)}" if body else markers(cited))
            self._open = ""
            self._last_cited = True
        rest = text[pos:]
        if rest:
            self._open += rest
            self._last_cited = self._last_cited and not rest.strip()
            out.append(neutralise(rest))
        return "".join(out)
