"""Shell globs (`*`, `?`, `[abc]`, `[!abc]`) as regular expressions that cannot backtrack
catastrophically, for filters on sources and other strings."""
from __future__ import annotations

import re


def _glob_tokens(pattern: str, any_char: str) -> list[str | None]:
    """Regex pieces of a glob (`*`, `?`, `[...]`, `[!...]`); None stands for a `*`."""
    out: list[str | None] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        i += 1
        if c == "*":
            if not out or out[-1] is not None:
                out.append(None)
        elif c == "?":
            out.append(any_char)
        elif c == "[":
            j = i + (1 if i < n and pattern[i] == "!" else 0)
            j += 1 if j < n and pattern[j] == "]" else 0
            j = pattern.find("]", j)
            if j < 0:
                out.append(re.escape(c))
                continue
            body = pattern[i:j].replace("\\", "\\\\")
            # A negated class must not match the newline that separates values in line mode.
            negated = ("(?!\\n)" if any_char != "." else "") + "[^" + body[1:] + "]"
            out.append(negated if body.startswith("!") else "[" + body + "]")
            i = j + 1
        else:
            out.append(re.escape(c))
    return out


def glob_regex(pattern: str, *, line: bool) -> str:
    """A glob as a regex that cannot backtrack catastrophically: the text between two `*` is found by
    an atomic lazy group (its first occurrence, which is also the right one for globs), as Python's
    fnmatch does. `line=True` matches whole lines of a newline-joined column (wildcards stop at
    newlines), else a whole single string."""
    any_char = "[^\\n]" if line else "."
    tokens = _glob_tokens(pattern, any_char)
    parts: list[str] = []
    i = 0
    while i < len(tokens) and tokens[i] is not None:  # the literal head
        parts.append(tokens[i])  # type: ignore[arg-type]
        i += 1
    segments: list[list[str]] = []
    while i < len(tokens):  # tokens[i] is a star; collect the segment after it
        i += 1
        seg: list[str] = []
        while i < len(tokens) and tokens[i] is not None:
            seg.append(tokens[i])  # type: ignore[arg-type]
            i += 1
        segments.append(seg)
    for k, seg in enumerate(segments):
        last = k == len(segments) - 1
        if last:
            parts.append(f"{any_char}*" + "".join(seg))
        else:
            parts.append(f"(?>{any_char}*?" + "".join(seg) + ")")
    return "".join(parts)
