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
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

import numpy as np

from .columns import MISSING, Column, Columns, as_datetime
from .errors import InvalidInputError
from .globs import glob_regex

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
                date = as_datetime(scalar)
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
            d = as_datetime(x)
            return d is not None and compare(d, v)
        return by_date
    if isinstance(v, str):
        return lambda x: isinstance(x, str) and compare(x, v)
    return lambda x: isinstance(x, (int, float)) and not isinstance(x, bool) and compare(x, v)


def _clause_mask(clause: Clause, column: Column) -> np.ndarray:
    if clause.op == "$exists":
        present = np.fromiter((x is not MISSING and x is not None for x in column.uniques), dtype=bool,
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
        if x is MISSING:
            return False
        if isinstance(x, list):  # a list-valued field matches when one of its items does
            return any(test(item) for item in x[:MAX_LIST])
        return test(x)

    mask = np.fromiter((holds(x) for x in column.uniques), dtype=bool, count=len(column.uniques))
    if clause.op in ("$ne", "$nin"):
        mask = ~mask
    return mask[column.codes]


_NUMPY_COMPARE = {"$gt": np.greater, "$gte": np.greater_equal, "$lt": np.less, "$lte": np.less_equal}


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
        return self._eval(self.root, Columns(documents, owner), len(documents), doc_row)

    def mask(self, index: "Index") -> np.ndarray:
        """One boolean per chunk row of `index`, for retrieval to search within."""
        allowed = self.document_mask(index.documents, index.doc_row, owner=index)
        return allowed[index.chunk_doc_row] if len(index.chunks) else np.zeros(0, dtype=bool)

    def matches(self, documents: Iterable["Document"]) -> list["Document"]:
        docs = list(documents)
        return [d for d, ok in zip(docs, self.document_mask(docs)) if ok]

    def _eval(self, node: Node, columns: Columns, n: int, doc_row: dict[str, int] | None) -> np.ndarray:
        if isinstance(node, Clause):
            if node.field == "document_id" and node.op in ("$eq", "$in") and doc_row is not None:
                # Ids are indexed: mark the named rows instead of scanning every document.
                out = np.zeros(n, dtype=bool)
                ids = node.value if node.op == "$in" else (node.value,)
                rows = [doc_row[i] for i in ids if isinstance(i, str) and i in doc_row]
                out[rows] = True
                return out
            return _clause_mask(node, columns.get(node.field, node.key))
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
