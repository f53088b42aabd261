"""Metadata filters: which documents a search may return, parsed once at the boundary.

Syntax (MongoDB-style, as Chroma, Pinecone and Qdrant clients write it):

    {"source": "seeds/*"}                          source glob (a list: any of them)
    {"document_id": ["a1", "b2"]}                  any of these ids
    {"metadata.author": "Ann"}                     equality (a list-valued field matches if any item does)
    {"metadata.year": {"$gte": 2020, "$lt": 2024}} numeric range
    {"metadata.date": {"$gte": "2024-01-01"}}      date range (ISO 8601 strings compare as dates)
    {"metadata.tags": {"$in": ["news", "blog"]}}   any of
    {"metadata.draft": {"$exists": false}}         presence
    {"title": {"$glob": "*report*"}}               glob on any string field
    {"$or": [{...}, {...}], "$not": {...}}         combinations; keys side by side mean "and"

Fields: `source`, `title`, `document_id`, and `metadata.KEY` (dotted for nested keys). Operators:
`$eq $ne $in $nin $gt $gte $lt $lte $exists $glob`, and `$and $or $not` to combine. A malformed
filter raises `FilterError` (HTTP 422) naming the bad part (`filters.$or[1].metadata.year.$gt: ...`).

Cost is bounded whatever a client sends: depth, clauses, list sizes and string lengths are capped;
globs are short and compiled with atomic groups (Python's fnmatch), so matching never backtracks
catastrophically; nothing is cached by client input. A filter is evaluated once per document, column by
column, into a row mask that retrieval applies before top-k (see `Filter.mask`).
"""
from __future__ import annotations

import datetime as _dt
import math
import re
import threading
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from .errors import InvalidInputError

if TYPE_CHECKING:
    from .documents import Document
    from .index import Index

MAX_DEPTH = 6  # nesting of $and/$or/$not
MAX_CLAUSES = 32  # field conditions in one filter
MAX_LIST = 256  # values in one $in / $nin / list
MAX_STRING = 1000  # characters in one value
MAX_GLOB = 256  # characters in one glob pattern
MAX_GLOB_WILDCARDS = 8  # `*` in one glob pattern
MAX_GLOBS = 4  # glob patterns in one filter (each is matched against every distinct value)
MAX_KEY_PARTS = 5  # metadata.a.b.c.d.e

BUILTIN_FIELDS = ("source", "title", "document_id")
COMPARISONS = ("$gt", "$gte", "$lt", "$lte")
OPERATORS = ("$eq", "$ne", "$in", "$nin", *COMPARISONS, "$exists", "$glob")
_MISSING = object()
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}([T ][0-9:.+\-Z]{2,32})?")


class FilterError(InvalidInputError):
    """A malformed filter; the message names the part (`filters.metadata.year.$gt: ...`)."""


# -- the parsed tree ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Clause:
    field: str  # "source", "title", "document_id" or "metadata"
    key: tuple[str, ...]  # metadata key path; () for the built-in fields
    op: str
    value: Any  # operand, normalised: tuple for $in/$nin and $glob, datetime for date ranges


@dataclass(frozen=True)
class Logical:
    op: str  # "$and", "$or", "$not"
    children: tuple["Node", ...]


Node = Clause | Logical


class _Parser:
    def __init__(self) -> None:
        self.clauses = 0
        self.globs = 0

    def fail(self, where: str, message: str) -> FilterError:
        return FilterError(f"{where}: {message}")

    def node(self, raw: Any, where: str, depth: int) -> Node:
        if depth > MAX_DEPTH:
            raise self.fail(where, f"nested more than {MAX_DEPTH} levels deep")
        if not isinstance(raw, dict):
            raise self.fail(where, f"expected an object, got {_type(raw)}")
        if not raw:
            raise self.fail(where, "empty filter object")
        parts: list[Node] = []
        for key, value in raw.items():
            if not isinstance(key, str) or len(key) > 200:
                raise self.fail(where, "field names are strings of at most 200 characters")
            here = f"{where}.{key}"
            if key in ("$and", "$or"):
                if not isinstance(value, list) or not value:
                    raise self.fail(here, "expected a non-empty list of filter objects")
                if len(value) > MAX_CLAUSES:
                    raise self.fail(here, f"more than {MAX_CLAUSES} items")
                parts.append(Logical(key, tuple(self.node(v, f"{here}[{i}]", depth + 1) for i, v in enumerate(value))))
            elif key == "$not":
                parts.append(Logical("$not", (self.node(value, here, depth + 1),)))
            elif key.startswith("$"):
                raise self.fail(here, "unknown operator; combine filters with $and, $or, $not")
            else:
                parts.extend(self.field(key, value, here))
        return parts[0] if len(parts) == 1 else Logical("$and", tuple(parts))

    def field(self, name: str, raw: Any, where: str) -> list[Clause]:
        if name in BUILTIN_FIELDS:
            field_, key = name, ()
        elif name.startswith("metadata.") and len(name) > len("metadata."):
            key = tuple(name[len("metadata."):].split("."))
            if len(key) > MAX_KEY_PARTS or not all(key):
                raise self.fail(where, f"metadata keys are `metadata.KEY`, with up to {MAX_KEY_PARTS} dotted parts")
            field_ = "metadata"
        else:
            hint = f"; metadata keys are written `metadata.{name}`" if "." not in name else ""
            raise self.fail(where, f"unknown filter field; filter on {', '.join(BUILTIN_FIELDS)} or metadata.KEY{hint}")
        if isinstance(raw, dict):
            if not raw:
                raise self.fail(where, "empty operator object")
            ops = list(raw.items())
        else:  # shorthand: a value (a list: any of them); a source is a glob, as it always was
            shorthand = "$glob" if field_ == "source" else "$eq"
            ops = [("$in" if shorthand == "$eq" else "$glob", raw)] if isinstance(raw, list) else [(shorthand, raw)]
        clauses = []
        for op, value in ops:
            here = f"{where}.{op}"
            if op not in OPERATORS:
                raise self.fail(here, f"unknown operator; use one of {', '.join(OPERATORS)}")
            self.clauses += 1
            if self.clauses > MAX_CLAUSES:
                raise self.fail(where, f"more than {MAX_CLAUSES} conditions in one filter")
            clauses.append(Clause(field_, key, op, self.operand(op, value, here)))
        return clauses

    def operand(self, op: str, value: Any, where: str) -> Any:
        if op == "$exists":
            if not isinstance(value, bool):
                raise self.fail(where, "expected true or false")
            return value
        if op in ("$in", "$nin") or (op == "$glob" and isinstance(value, list)):
            if not isinstance(value, list) or not value:
                raise self.fail(where, "expected a non-empty list")
            if len(value) > MAX_LIST:
                raise self.fail(where, f"more than {MAX_LIST} values")
            items = tuple(self.scalar(v, f"{where}[{i}]") for i, v in enumerate(value))
            if op == "$glob":
                self.count_globs(len(items), where)
                return tuple(_glob(v, f"{where}[{i}]") for i, v in enumerate(items))
            return items
        if op == "$glob":
            self.count_globs(1, where)
            return (_glob(self.scalar(value, where), where),)
        scalar = self.scalar(value, where)
        if op in COMPARISONS:
            if isinstance(scalar, bool) or scalar is None:
                raise self.fail(where, "expected a number, a date (YYYY-MM-DD...) or a string")
            if isinstance(scalar, str):
                date = _as_datetime(scalar)
                return date if date is not None else scalar
        return scalar

    def count_globs(self, n: int, where: str) -> None:
        self.globs += n
        if self.globs > MAX_GLOBS:
            raise self.fail(where, f"more than {MAX_GLOBS} glob patterns in one filter")

    def scalar(self, value: Any, where: str) -> Any:
        if value is None or isinstance(value, (bool, int)):
            return value
        if isinstance(value, float):
            if not math.isfinite(value):
                raise self.fail(where, "numbers must be finite")
            return value
        if isinstance(value, str):
            if len(value) > MAX_STRING:
                raise self.fail(where, f"strings are at most {MAX_STRING} characters")
            return value
        raise self.fail(where, f"expected a string, number, boolean or null, got {_type(value)}")


def _type(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}.get(type(value), type(value).__name__)


def _glob(pattern: Any, where: str) -> str:
    """A checked glob pattern (kept as text; see `glob_regex`)."""
    if not isinstance(pattern, str) or not pattern:
        raise FilterError(f"{where}: a glob pattern is a non-empty string")
    if len(pattern) > MAX_GLOB:
        raise FilterError(f"{where}: glob patterns are at most {MAX_GLOB} characters")
    if pattern.count("*") > MAX_GLOB_WILDCARDS:
        raise FilterError(f"{where}: glob patterns hold at most {MAX_GLOB_WILDCARDS} `*`")
    return pattern


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


def _as_datetime(value: Any) -> _dt.datetime | None:
    if not isinstance(value, str) or not _DATE.fullmatch(value):
        return None
    try:
        parsed = _dt.datetime.fromisoformat(value.replace("Z", "+00:00") if value.endswith("Z") else value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=_dt.timezone.utc)


# -- evaluation --------------------------------------------------------------------------------
def _scalar_test(clause: Clause) -> Callable[[Any], bool]:
    """A test of one (non-list) value against a clause."""
    op, v = clause.op, clause.value
    if op in ("$eq", "$ne"):
        if isinstance(v, bool):
            return lambda x: isinstance(x, bool) and x is v
        if isinstance(v, (int, float)):
            return lambda x: isinstance(x, (int, float)) and not isinstance(x, bool) and x == v
        return lambda x: type(x) is type(v) and x == v
    if op in ("$in", "$nin"):
        strings = {x for x in v if isinstance(x, str)}
        numbers = {x for x in v if isinstance(x, (int, float)) and not isinstance(x, bool)}
        flags = {x for x in v if isinstance(x, bool) or x is None}

        def member(x: Any) -> bool:
            if isinstance(x, str):
                return x in strings
            if isinstance(x, bool) or x is None:
                return any(x is f for f in flags)
            return isinstance(x, (int, float)) and x in numbers

        return member
    if op == "$glob":
        match = re.compile("(?s:" + "|".join(f"(?:{glob_regex(p, line=False)})" for p in v) + r")\Z").match
        return lambda x: isinstance(x, str) and match(x) is not None
    compare = {"$gt": lambda a, b: a > b, "$gte": lambda a, b: a >= b,
               "$lt": lambda a, b: a < b, "$lte": lambda a, b: a <= b}[op]
    if isinstance(v, _dt.datetime):
        def by_date(x: Any) -> bool:
            d = _as_datetime(x)
            return d is not None and compare(d, v)
        return by_date
    if isinstance(v, str):
        return lambda x: isinstance(x, str) and compare(x, v)
    return lambda x: isinstance(x, (int, float)) and not isinstance(x, bool) and compare(x, v)


class Column:
    """One field's values over the documents, dictionary-encoded: `codes[row]` indexes `uniques`. A
    clause is tested once per distinct value (50 authors, not 100k documents), then spread by `codes`."""

    __slots__ = ("codes", "uniques", "_numbers", "_times", "_lists", "_joined", "_is_str")

    def __init__(self, values: Iterable[Any]):
        seen: dict[Any, int] = {}
        uniques: list[Any] = []
        codes: list[int] = []
        for v in values:
            t = type(v)
            # The type is part of the key: 1, 1.0 and True are equal (and hash alike) in Python.
            key = (t, v) if t is str or t is int or t is float or t is bool or v is None else (t, repr(v))
            code = seen.get(key)
            if code is None:
                code = seen[key] = len(uniques)
                uniques.append(v)
            codes.append(code)
        self.codes = np.asarray(codes, dtype=np.int32)
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
            parsed = (_as_datetime(u) for u in self.uniques)
            self._times = np.array([d.timestamp() if d is not None else np.nan for d in parsed], dtype=np.float64)
        return self._times


def _clause_mask(clause: Clause, column: Column) -> np.ndarray:
    if clause.op == "$exists":
        present = np.fromiter((x is not _MISSING and x is not None for x in column.uniques), dtype=bool,
                              count=len(column.uniques))
        return (present if clause.value else ~present)[column.codes]
    if clause.op in COMPARISONS and not column._lists and not isinstance(clause.value, str):
        # Numbers and dates compare as arrays (NaN, for other types, never satisfies a comparison).
        if isinstance(clause.value, _dt.datetime):
            values, bound = column.times(), clause.value.timestamp()
        else:
            values, bound = column.numbers(), float(clause.value)
        with np.errstate(invalid="ignore"):
            out = _NUMPY_COMPARE[clause.op](values, bound)
        return out[column.codes]
    if clause.op == "$glob" and not column._lists:
        return column.glob_mask(clause.value)[column.codes]
    test = _scalar_test(clause)

    def holds(x: Any) -> bool:
        if x is _MISSING:
            return False
        if isinstance(x, list):  # a list-valued field matches when one of its items does
            return any(test(item) for item in x[:MAX_LIST])
        return test(x)

    mask = np.fromiter((holds(x) for x in column.uniques), dtype=bool, count=len(column.uniques))
    if clause.op in ("$ne", "$nin"):
        mask = ~mask
    return mask[column.codes]


_NUMPY_COMPARE = {"$gt": np.greater, "$gte": np.greater_equal, "$lt": np.less, "$lte": np.less_equal}


def _lookup(metadata: Any, key: tuple[str, ...]) -> Any:
    value = metadata
    for part in key:
        if not isinstance(value, dict):
            return _MISSING
        value = value.get(part, _MISSING)
        if value is _MISSING:
            return _MISSING
    return value


def _values(documents: Sequence["Document"], field: str, key: tuple[str, ...]) -> Iterator[Any]:
    if field == "metadata":
        return (_lookup(d.metadata, key) for d in documents)
    if field == "document_id":
        return (d.id for d in documents)
    return (getattr(d, field) for d in documents)


MAX_CACHED_COLUMNS = 32
_CACHE: dict[int, "OrderedDict[tuple, Column]"] = {}
_CACHE_LOCK = threading.Lock()


class _Columns:
    """Columns of one document list. For an index snapshot they are kept with the snapshot (at most
    `MAX_CACHED_COLUMNS` per snapshot, least recently used dropped, gone with the snapshot), so a field
    is encoded once however many requests filter on it; other lists are encoded per call."""

    def __init__(self, documents: Sequence["Document"], owner: Any = None):
        self.documents = documents
        self.owner = owner

    def get(self, clause: Clause) -> Column:
        name = (clause.field, *clause.key)
        if self.owner is None:
            return Column(_values(self.documents, clause.field, clause.key))
        with _CACHE_LOCK:
            cache = _CACHE.get(id(self.owner))
            if cache is None:  # dropped when the snapshot is (an index is unhashable: keyed by id)
                cache = _CACHE[id(self.owner)] = OrderedDict()
                weakref.finalize(self.owner, _CACHE.pop, id(self.owner), None)
            column = cache.get(name)
            if column is not None:
                cache.move_to_end(name)
                return column
        column = Column(_values(self.documents, clause.field, clause.key))
        with _CACHE_LOCK:
            cache[name] = column
            while len(cache) > MAX_CACHED_COLUMNS:
                cache.popitem(last=False)
        return column


class Filter:
    """A parsed filter. `Filter.parse(raw)` validates (raising `FilterError`); `mask(index)` gives the
    chunk rows it allows."""

    def __init__(self, root: Node, raw: dict):
        self.root = root
        self.raw = raw

    @classmethod
    def parse(cls, raw: Any, where: str = "filters") -> "Filter | None":
        if raw is None or raw == {}:
            return None
        if isinstance(raw, Filter):
            return raw
        return cls(_Parser().node(raw, where, 1), raw)

    def __repr__(self) -> str:
        return f"Filter({self.raw!r})"

    def document_mask(self, documents: Sequence["Document"], doc_row: dict[str, int] | None = None, *,
                      owner: Any = None) -> np.ndarray:
        """One boolean per document: whether it passes. `owner` (an index snapshot) keeps the encoded
        columns for later calls on the same documents."""
        return self._eval(self.root, _Columns(documents, owner), len(documents), doc_row)

    def mask(self, index: "Index") -> np.ndarray:
        """One boolean per chunk row of `index`, for retrieval to search within."""
        allowed = self.document_mask(index.documents, index.doc_row, owner=index)
        return allowed[index.chunk_doc_row] if len(index.chunks) else np.zeros(0, dtype=bool)

    def matches(self, documents: Iterable["Document"]) -> list["Document"]:
        docs = list(documents)
        return [d for d, ok in zip(docs, self.document_mask(docs)) if ok]

    def _eval(self, node: Node, columns: _Columns, n: int, doc_row: dict[str, int] | None) -> np.ndarray:
        if isinstance(node, Clause):
            if node.field == "document_id" and node.op in ("$eq", "$in") and doc_row is not None:
                # Ids are indexed: mark the named rows instead of scanning every document.
                out = np.zeros(n, dtype=bool)
                ids = node.value if node.op == "$in" else (node.value,)
                rows = [doc_row[i] for i in ids if isinstance(i, str) and i in doc_row]
                out[rows] = True
                return out
            return _clause_mask(node, columns.get(node))
        if node.op == "$not":
            return ~self._eval(node.children[0], columns, n, doc_row)
        masks = (self._eval(c, columns, n, doc_row) for c in node.children)
        out = next(masks).copy()
        for m in masks:
            if node.op == "$and":
                out &= m
            else:
                out |= m
        return out
