"""Document fields as columns for filters: dictionary-encoded (a clause is tested once per distinct
value, then spread over the rows), with number, date and joined-text views computed once, and kept
with an index snapshot in a bounded cache that is dropped with the snapshot."""
from __future__ import annotations

import datetime as _dt
import re
import threading
import weakref
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Sequence

import numpy as np

from .globs import glob_regex

if TYPE_CHECKING:
    from .documents import Document

MISSING = object()  # a document without the key
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}([T ][0-9:.+\-Z]{2,32})?")


def as_datetime(value: Any) -> _dt.datetime | None:
    if not isinstance(value, str) or not _DATE.fullmatch(value):
        return None
    try:
        parsed = _dt.datetime.fromisoformat(value.replace("Z", "+00:00") if value.endswith("Z") else value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=_dt.timezone.utc)


# -- evaluation --------------------------------------------------------------------------------
class Column:
    """One field's values over the documents, dictionary-encoded: `codes[row]` indexes `uniques`. A
    clause is tested once per distinct value (50 authors, not 100k documents), then spread by `codes`."""

    __slots__ = ("codes", "uniques", "_numbers", "_times", "_lists", "_joined", "_is_str")

    def __init__(self, values: Iterable[Any]):
        values = list(values)
        # The type is part of the key: 1, 1.0 and True are equal (and hash alike) in Python. Strings,
        # the common case, are their own key (no other type's key is a str).
        keys = [v if type(v) is str else _key(v) for v in values]
        first: dict[Any, int] = {}
        for i, k in enumerate(keys):
            first.setdefault(k, i)
        code_of = {k: c for c, k in enumerate(first)}
        uniques = [values[i] for i in first.values()]
        self.codes = np.fromiter(map(code_of.__getitem__, keys), dtype=np.int32, count=len(keys))
        self.uniques = uniques
        self._numbers: np.ndarray | None = None
        self._times: np.ndarray | None = None
        self._lists = any(type(u) is list for u in uniques)
        self._joined: tuple[str, np.ndarray] | None = None
        self._is_str: np.ndarray | None = None

    def numbers(self) -> np.ndarray:
        """Each distinct value as a float (NaN when it is not a number; booleans are not numbers)."""
        if self._numbers is None:
            self._numbers = np.array([float(u) if type(u) in (int, float) else np.nan for u in self.uniques],
                                     dtype=np.float64)
        return self._numbers

    def glob_mask(self, patterns: Sequence[str]) -> np.ndarray:
        """Which distinct values match any of `patterns`: one regex scan over the values joined by
        newlines (no Python call per value), each match mapped back to its value by offset."""
        if self._joined is None:
            texts = [u.replace("\n", " ") if type(u) is str else "" for u in self.uniques]
            lengths = np.fromiter((len(t) + 1 for t in texts), dtype=np.int64, count=len(texts))
            # "\n" before every value: the regex starts with that literal, so the engine jumps from
            # value to value (a fast character search) instead of trying every position.
            self._joined = ("\n" + "\n".join(texts) + "\n", np.concatenate(([1], 1 + np.cumsum(lengths)[:-1])))
            self._is_str = np.fromiter((type(u) is str for u in self.uniques), dtype=bool, count=len(self.uniques))
        text, starts = self._joined
        regex = re.compile("\n(?:" + "|".join(f"(?:{glob_regex(p, line=True)})" for p in patterns) + ")(?=\n)")
        hits = np.fromiter((m.start() + 1 for m in regex.finditer(text)), dtype=np.int64)
        out = np.zeros(len(self.uniques), dtype=bool)
        out[np.searchsorted(starts, hits, side="right") - 1] = True
        return out & self._is_str

    def times(self) -> np.ndarray:
        """Each distinct value as a UTC timestamp (NaN when it is not an ISO 8601 date string)."""
        if self._times is None:
            parsed = (as_datetime(u) for u in self.uniques)
            self._times = np.array([d.timestamp() if d is not None else np.nan for d in parsed], dtype=np.float64)
        return self._times


def _lookup(metadata: Any, key: tuple[str, ...]) -> Any:
    value = metadata
    for part in key:
        if not isinstance(value, dict):
            return MISSING
        value = value.get(part, MISSING)
        if value is MISSING:
            return MISSING
    return value


def _key(v: Any) -> Any:
    t = type(v)
    return (t, v) if t is int or t is float or t is bool or v is None else (t, repr(v))


def _values(documents: Sequence["Document"], field: str, key: tuple[str, ...]) -> Iterator[Any]:
    if field == "metadata" and len(key) == 1:  # the common case, without a call per document
        name = key[0]
        return (m.get(name, MISSING) if type(m) is dict else MISSING for m in (d.metadata for d in documents))
    if field == "metadata":
        return (_lookup(d.metadata, key) for d in documents)
    if field == "document_id":
        return (d.id for d in documents)
    return (getattr(d, field) for d in documents)


MAX_CACHED_COLUMNS = 32
_CACHE: dict[int, "OrderedDict[tuple, Column]"] = {}
_CACHE_LOCK = threading.Lock()


class Columns:
    """Columns of one document list. For an index snapshot they are kept with the snapshot (at most
    `MAX_CACHED_COLUMNS` per snapshot, least recently used dropped, gone with the snapshot), so a field
    is encoded once however many requests filter on it; other lists are encoded per call."""

    def __init__(self, documents: Sequence["Document"], owner: Any = None):
        self.documents = documents
        self.owner = owner

    def get(self, field: str, key: tuple[str, ...]) -> Column:
        name = (field, *key)
        if self.owner is None:
            return Column(_values(self.documents, field, key))
        with _CACHE_LOCK:
            cache = _CACHE.get(id(self.owner))
            if cache is None:  # dropped when the snapshot is (an index is unhashable: keyed by id)
                cache = _CACHE[id(self.owner)] = OrderedDict()
                weakref.finalize(self.owner, _CACHE.pop, id(self.owner), None)
            column = cache.get(name)
            if column is not None:
                cache.move_to_end(name)
                return column
        column = Column(_values(self.documents, field, key))
        with _CACHE_LOCK:
            cache[name] = column
            while len(cache) > MAX_CACHED_COLUMNS:
                cache.popitem(last=False)
        return column
