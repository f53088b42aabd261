"""Checks on a JSON request body before anything parses it: UTF-8, nesting depth, lone surrogates.

Python's `json` module recurses once per nesting level (5,000 levels end in RecursionError, and a few
hundred are enough to break serialising the value back out later), and it turns `"\\ud800"` escapes
and CESU-8 bytes into lone surrogates that UTF-8 cannot store. One scan at the boundary refuses all
of these for every route with the same 422, so no route, model or stored document ever sees them.

The scan works on bytes with C-speed primitives (replace, regex, translate, a numpy running sum): it
recurses nowhere, and a 10 MB body costs well under a second even when built to be slow (the size
limit middleware runs it in a worker thread for large bodies).
"""
from __future__ import annotations

import re

import numpy as np

MAX_DEPTH = 32  # arrays and objects inside each other; request bodies here need fewer than 10

_STRING = re.compile(rb'"[^"]*"')
# With escaped backslashes blanked out, every remaining backslash starts an escape, so these cannot
# be fooled by `\\ud800` (a backslash, then the letters "ud800").
_LONE_HIGH = re.compile(rb"\\u[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F][0-9a-fA-F]{2})")
_LONE_LOW = re.compile(rb"(?<!\\u[dD][89abAB][0-9a-fA-F]{2})\\u[dD][c-fC-F][0-9a-fA-F]{2}")
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")

_OPENERS, _CLOSERS = b"[{", b"]}"
_KEEP_BRACKETS = bytes(b for b in range(256) if b not in _OPENERS + _CLOSERS)
# Openers become +1 and closers -1 (0xff as a signed byte); the running sum is the depth.
_STEPS = bytes.maketrans(_OPENERS + _CLOSERS, b"\x01\x01\xff\xff")


class JsonBodyError(ValueError):
    """A body that must not be parsed; the message says why, for a 422."""


def check_json_body(body: bytes, max_depth: int = MAX_DEPTH) -> None:
    """Raise JsonBodyError when `body` is not UTF-8, nests deeper than `max_depth`, or holds a lone
    surrogate escape. Anything else (syntax errors included) is left to the JSON parser's own message."""
    try:
        body.decode("utf-8")  # strict: refuses encoded surrogates (CESU-8) and UTF-16/32 bodies alike
    except UnicodeDecodeError as exc:
        raise JsonBodyError(f"request body is not valid UTF-8 (byte {exc.start})") from None
    blanked = body.replace(b"\\\\", b"__")  # left to right, like a JSON parser reads escapes
    if _SURROGATE_ESCAPE.search(blanked):  # rare: only then look closer
        bad = _LONE_HIGH.search(blanked) or _LONE_LOW.search(blanked)
        if bad:
            raise JsonBodyError(f"request body contains a lone surrogate escape "
                                f"({bad.group().decode('ascii')}), which is not a Unicode character")
    outside_strings = _STRING.sub(b"", blanked.replace(b'\\"', b"__"))
    steps = np.frombuffer(outside_strings.translate(_STEPS, _KEEP_BRACKETS), dtype=np.int8)
    depth = int(steps.cumsum(dtype=np.int32).max()) if steps.size else 0
    if depth > max_depth:
        raise JsonBodyError(f"request body nests arrays and objects more than {max_depth} levels deep")


def is_json_content_type(content_type: str | None) -> bool:
    """The bodies FastAPI parses as JSON: no content type, application/json or application/*+json."""
    if not content_type:
        return True
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))
