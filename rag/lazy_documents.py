"""A segment's documents, each made from its line of `documents.fields.jsonl` when first read.

Parsing every line and making every document object when a segment opened took ~1.5 s of a
server's start at a million chunks (143k documents), for a query that reads the few documents it
quotes. The file's bytes (~150 bytes a document) are held instead, with each line's position, and
a document is made on first access and kept. Reading all of them (a lookup by id builds the id map,
a filter on a field, a merge) makes the rest at once, as the eager load did.
"""
from __future__ import annotations

import json
import operator
import threading
from collections.abc import Sequence
from typing import Callable, Iterator

import numpy as np


class LazyDocuments(Sequence):
    """Row -> document, made by `make(row, fields)` from the row's JSON line, once."""

    def __init__(self, lines: bytes, make: Callable[[int, dict], object]):
        ends = np.flatnonzero(np.frombuffer(lines, dtype=np.uint8) == 0x0A)
        if lines and not lines.endswith(b"\n"):  # a last line without its newline
            ends = np.append(ends, len(lines))
        self._lines = lines
        self._starts = np.concatenate(([0], ends[:-1] + 1)).astype(np.int64) if len(ends) else ends
        self._ends = ends
        self._made: list = [None] * len(ends)
        self._make = make
        self._complete = False
        self._lock = threading.Lock()  # one thread makes the rest at once; single rows need no lock

    def __len__(self) -> int:
        return len(self._made)

    def __getitem__(self, row):  # type: ignore[override]
        if isinstance(row, slice):
            return [self[r] for r in range(*row.indices(len(self)))]
        row = operator.index(row)
        if row < 0:
            row += len(self._made)
        if not 0 <= row < len(self._made):
            raise IndexError(f"document row {row} out of range ({len(self._made)} documents)")
        doc = self._made[row]
        if doc is None:
            doc = self._made[row] = self._make(row, self._fields(row))
        return doc

    def __iter__(self) -> Iterator:
        if not self._complete:
            self.make_all()
        return iter(self._made)

    def make_all(self) -> None:
        """Make every document not made yet (what iterating needs)."""
        with self._lock:
            if self._complete:
                return
            made = self._made
            for row in range(len(made)):
                if made[row] is None:
                    made[row] = self._make(row, self._fields(row))
            self._complete = True

    def _fields(self, row: int) -> dict:
        return json.loads(self._lines[int(self._starts[row]): int(self._ends[row])])
