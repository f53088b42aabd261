"""Which sentences read as prose. Captions, headlines, bylines, figure and table labels, metadata and
reference-list lines stay searchable, but an answer quotes them only when no prose sentence answers."""
from __future__ import annotations

import re
from functools import lru_cache

_ENDS_LIKE_A_SENTENCE = ".!?\"'\u201d\u2019)]:;"
_LABEL_RE = re.compile(r"^\W*(fig(ure)?s?|tables?|supplementary|appendix|photo|image|credit|caption|source)\b[\s.:\dA-Z]",
                       re.IGNORECASE)
_BYLINE_RE = re.compile(r"^\W*(by|written by|reporting by|edited by|additional reporting by)\s+[A-Z]")
_META_RE = re.compile(r"^\W*(doi|license|licence|date|sha|authors?|keywords|received|accepted|published|"
                      r"copyright|correspondence|e-?mail|citation|editor)\s*:", re.IGNORECASE)
# "12. Smith AB, Jones C. Title. J Virol 2003;77:..." or "[12] Smith, A. et al. (2003)"
_REFERENCE_RE = re.compile(r"^\s*(\[\d+\]|\d{1,3}\.)\s+[A-Z][\w'\-]+,?\s+[A-Z]")
# A reference after the full stop ("lamp.:79", "cells. [12]", "known.(3)") does not stop a sentence being one.
_TRAILING_REFERENCE_RE = re.compile(r"(?<=[.!?\"'\u201d\u2019])[\s:\d,;\-\u2013\[\]()]+$")
_CITATION_TAIL_RE = re.compile(r"(\bet al\.|\(\d{4}\)|\b\d{4};\s*\d|\bdoi\b|https?://)", re.IGNORECASE)


@lru_cache(maxsize=1 << 16)  # a pure function of the text; the same sentences come back question after question
def is_prose(text: str) -> bool:
    """A sentence that ends like one and is not a label, byline, metadata or reference line."""
    body = _TRAILING_REFERENCE_RE.sub("", text.strip())
    if len(body.split()) < 4 or body[-1:] not in _ENDS_LIKE_A_SENTENCE:
        return False
    if _LABEL_RE.match(body) or _BYLINE_RE.match(body) or _META_RE.match(body):
        return False
    if _REFERENCE_RE.match(body) and _CITATION_TAIL_RE.search(body):
        return False
    return True
