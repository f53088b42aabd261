"""A write-ahead journal of document changes, so that every acknowledged write survives a crash.

Each change is one JSON line `{"seq": n, "op": "put"|"delete", ...}` appended and fsynced before
the write is acknowledged. A snapshot records the last sequence number it contains; on start the
journal's later records are replayed over the snapshot. A torn last line (a crash mid-append,
never acknowledged) is ignored. Compaction writes a snapshot and then empties the journal.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from .documents import Document
from .durable import fsync_path
from .records import document_from_record, document_record


@dataclass(frozen=True)
class Change:
    seq: int
    op: str  # "put" or "delete"
    document: Document | None = None
    document_id: str | None = None

    def to_json(self) -> str:
        if self.op == "put":
            return json.dumps({"seq": self.seq, "op": "put", "document": document_record(self.document)},
                              ensure_ascii=False)
        return json.dumps({"seq": self.seq, "op": "delete", "document_id": self.document_id})

    @classmethod
    def from_json(cls, line: str) -> "Change":
        r = json.loads(line)
        if r["op"] == "put":
            return cls(seq=r["seq"], op="put", document=document_from_record(r["document"]))
        if r["op"] == "delete":
            return cls(seq=r["seq"], op="delete", document_id=r["document_id"])
        raise ValueError(f"unknown journal op {r['op']!r}")


class Journal:
    def __init__(self, path: Path):
        self.path = path

    def read(self, after: int = 0) -> list[Change]:
        """Changes with seq > `after`, in order. Stops at a torn or unreadable tail."""
        if not self.path.exists():
            return []
        changes = []
        with open(self.path, "rb") as f:
            for raw in f:
                if not raw.endswith(b"\n"):
                    break  # torn last line: the append never completed, so it was never acknowledged
                try:
                    change = Change.from_json(raw.decode("utf-8"))
                except (ValueError, KeyError, TypeError, UnicodeDecodeError):
                    break
                if change.seq > after:
                    changes.append(change)
        return changes

    def last_seq(self) -> int:
        changes = self.read()
        return changes[-1].seq if changes else 0

    def append(self, changes: list[Change]) -> None:
        """Append and fsync: when this returns, the changes survive a crash."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._drop_torn_tail()
        data = "".join(c.to_json() + "\n" for c in changes).encode("utf-8")
        created = not self.path.exists()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        if created:
            fsync_path(self.path.parent)  # the new file's directory entry must survive a power loss too

    def _drop_torn_tail(self) -> None:
        if not self.path.exists():
            return
        with open(self.path, "rb+") as f:
            data = f.read()
            if data and not data.endswith(b"\n"):
                f.truncate(data.rfind(b"\n") + 1)

    def clear(self) -> None:
        """Empty the journal (after a snapshot that contains every change in it)."""
        tmp = self.path.with_suffix(".tmp")
        tmp.write_bytes(b"")
        os.replace(tmp, self.path)
        fsync_path(self.path.parent)

