"""A write-ahead journal of document changes, so that every acknowledged write survives a crash.

Each change is one line of JSON, appended and fsynced before the write is acknowledged:

    {"v":2,"seq":7,"op":"put","document":{...},"crc":"9f3a61c2"}
    {"v":2,"seq":8,"op":"delete","document_id":"a1","crc":"04d1b7e0"}

`crc` is the CRC-32 of the line's bytes before `,"crc":` (so it checks exactly what was written,
not a re-serialisation). A snapshot records the last sequence number it contains; on start the
journal's later records are replayed over the snapshot.

Reading never stops at damage. A line whose checksum fails is skipped and reported (a
`DamagedRecord`), and the lines after it are read as usual; intact records inside a damaged line
(two records run together when a newline byte was damaged) are recovered. A torn last line (a crash
mid-append: never acknowledged) is dropped and logged. Lines without `v`/`crc` are the first
format (before checksums) and are still read. Compaction never destroys damage: a journal holding
damaged records is moved aside as `journal.damaged-<time>.jsonl` for an operator to inspect.

An append that cannot be wholly written and fsynced is cut back off the file and raises
`StorageError` (`DiskFullError` when the disk is full), so nothing unacknowledged stays behind.
"""
from __future__ import annotations

import json
import logging
import os
import re
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from .documents import Document
from .durable import fsync_path, storage_error, write_all
from .records import document_from_record, document_record

log = logging.getLogger("rag.journal")

FORMAT_VERSION = 2  # 1: no version, no checksum; 2: "v" and a CRC-32 per line
_CRC_TAIL = re.compile(rb',"crc":"([0-9a-f]{8})"\}\Z')
_CRC_ANYWHERE = re.compile(rb',"crc":"[0-9a-f]{8}"\}')
_RECORD_START = b'{"v":2,'


@dataclass(frozen=True)
class Change:
    seq: int
    op: str  # "put" or "delete"
    document: Document | None = None
    document_id: str | None = None

    def body(self) -> dict:
        if self.op == "put":
            return {"v": FORMAT_VERSION, "seq": self.seq, "op": "put", "document": document_record(self.document)}
        return {"v": FORMAT_VERSION, "seq": self.seq, "op": "delete", "document_id": self.document_id}

    def to_line(self) -> bytes:
        """One journal line, newline included, checksummed."""
        raw = json.dumps(self.body(), ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        head = raw[:-1]  # without the closing brace: the checksum covers these bytes
        return head + b',"crc":"%08x"}\n' % zlib.crc32(head)

    @classmethod
    def from_record(cls, r: dict) -> "Change":
        if r["op"] == "put":
            return cls(seq=int(r["seq"]), op="put", document=document_from_record(r["document"]))
        if r["op"] == "delete":
            return cls(seq=int(r["seq"]), op="delete", document_id=r["document_id"])
        raise ValueError(f"unknown journal op {r['op']!r}")


@dataclass(frozen=True)
class DamagedRecord:
    """A stretch of a journal file that is not a valid record: skipped, never applied."""

    file: str  # the journal file's name
    line_no: int  # 1-based
    offset: int  # byte offset of the damaged bytes in the file
    length: int  # how many bytes are damaged
    reason: str

    def to_dict(self) -> dict:
        return {"file": self.file, "line": self.line_no, "offset": self.offset, "bytes": self.length,
                "reason": self.reason}

    def describe(self) -> str:
        return f"{self.file} line {self.line_no} (byte {self.offset}, {self.length} bytes): {self.reason}"


@dataclass
class JournalRead:
    """What a read found: the changes to replay, what was damaged, and a torn tail if any."""

    changes: list[Change] = field(default_factory=list)
    damaged: list[DamagedRecord] = field(default_factory=list)
    torn_tail_bytes: int = 0  # an unfinished last line (never acknowledged), dropped


def _verified(line: bytes) -> dict | None:
    """The record in a checksummed line (without its newline), or None if it does not verify."""
    m = _CRC_TAIL.search(line)
    if m is None or zlib.crc32(line[:m.start()]) != int(m.group(1), 16):
        return None
    try:
        record = json.loads(line)
        Change.from_record(record)
    except (ValueError, KeyError, TypeError, AttributeError):
        return None  # a checksum that matches over bytes we did not write: treat as damage
    return record if record.get("v") == FORMAT_VERSION else None


def _legacy(line: bytes) -> dict | None:
    """A record of the first format (no version, no checksum), or None."""
    try:
        record = json.loads(line)
        if not isinstance(record, dict) or "v" in record or "crc" in record:
            return None  # a checksummed record that failed its check is damage, not an old record
        Change.from_record(record)
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    return record


def _salvage(line: bytes) -> list[tuple[int, int, dict]]:
    """Intact checksummed records inside a damaged line, as (start, end, record): when a newline
    was damaged, two or more records run together and each still carries its own checksum."""
    starts = [m.start() for m in re.finditer(re.escape(_RECORD_START), line)]
    ends = [m.end() for m in _CRC_ANYWHERE.finditer(line)]
    found, pos = [], 0
    for s in starts:
        if s < pos:
            continue
        for e in ends:
            if e > s and (record := _verified(line[s:e])) is not None:
                found.append((s, e, record))
                pos = e
                break
    return found


def _parse(data: bytes, name: str) -> JournalRead:
    out = JournalRead()
    lines = data.split(b"\n")
    tail = lines.pop()  # b"" when the file ends with a newline
    offset = 0
    for line_no, line in enumerate(lines, start=1):
        record = _verified(line) if line.startswith(_RECORD_START) else None
        if record is None:
            record = _legacy(line)
        if record is not None:
            out.changes.append(Change.from_record(record))
        elif line.strip():
            # Skip the damage, keep whatever intact records it still contains.
            pos = 0
            for s, e, rec in _salvage(line):
                if s > pos:
                    out.damaged.append(DamagedRecord(name, line_no, offset + pos, s - pos, _reason(line[pos:s])))
                out.changes.append(Change.from_record(rec))
                pos = e
            if pos < len(line):
                out.damaged.append(DamagedRecord(name, line_no, offset + pos, len(line) - pos,
                                                 _reason(line[pos:])))
        offset += len(line) + 1
    if tail:
        record = _verified(tail[:-1])
        if record is not None:  # a whole record whose newline byte was damaged: it was acknowledged
            out.changes.append(Change.from_record(record))
            out.damaged.append(DamagedRecord(name, len(lines) + 1, offset + len(tail) - 1, 1,
                                             "damaged newline after an intact record (record kept)"))
        else:
            out.torn_tail_bytes = len(tail)
    return out


def _reason(chunk: bytes) -> str:
    return "checksum mismatch" if _CRC_ANYWHERE.search(chunk) else "not a journal record"


class Journal:
    def __init__(self, path: Path):
        self.path = path

    def read(self, after: int = 0) -> JournalRead:
        """Changes with seq > `after`, in file order, and what was skipped. Damage is logged (once per
        process for each damaged stretch); it never hides the records after it."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return JournalRead()
        result = _parse(data, self.path.name)
        _log_damage(self.path, result)
        result.changes = [c for c in result.changes if c.seq > after]
        return result

    def last_seq(self) -> int:
        return max((c.seq for c in self.read().changes), default=0)

    def append(self, changes: list[Change]) -> None:
        """Append and fsync: when this returns, the changes survive a crash. When any part fails
        (short write, no space, fsync error) the file is cut back to its length before the append
        and StorageError (DiskFullError when out of space) is raised: nothing half-written stays."""
        data = b"".join(c.to_line() for c in changes)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            created = not self.path.exists()
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as exc:
            raise storage_error(exc, "the journal") from exc
        try:
            start = self._repair_tail(fd)
            try:
                write_all(fd, data)
                os.fsync(fd)
                if created:
                    fsync_path(self.path.parent)  # the new file's name must survive a power loss too
            except OSError as exc:
                self._roll_back(fd, start, exc)
                raise storage_error(exc, "the journal") from exc
        finally:
            os.close(fd)

    def _repair_tail(self, fd: int) -> int:
        """Before appending: drop a torn last line (never acknowledged) so the new records start on
        a line of their own; restore a damaged final newline after an intact record. Returns the
        length the append starts from."""
        size = os.fstat(fd).st_size
        if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
            return size
        data = os.pread(fd, size, 0)
        keep = data.rfind(b"\n") + 1
        try:
            if _verified(data[keep:-1]) is not None:
                # On Linux pwrite on an O_APPEND descriptor appends, so the byte is put back through
                # a second descriptor; in place, so a crash now cannot lose the record either.
                fix = os.open(self.path, os.O_WRONLY)
                try:
                    os.pwrite(fix, b"\n", size - 1)
                    os.fsync(fix)
                finally:
                    os.close(fix)
                log.warning("%s: restored the newline after the last record", self.path)
                return size
            log.warning("%s: dropping a torn last line (%d bytes, never acknowledged)", self.path, size - keep)
            os.ftruncate(fd, keep)
            os.fsync(fd)
        except OSError as exc:
            raise storage_error(exc, "the journal") from exc
        return keep

    def _roll_back(self, fd: int, length: int, cause: OSError) -> None:
        try:
            os.ftruncate(fd, length)
            os.fsync(fd)
        except OSError as exc:  # the next append or read drops an unfinished tail; whole lines may remain
            log.critical("%s: append failed (%s) and could not be cut back to %d bytes (%s)",
                         self.path, cause, length, exc)
        else:
            log.error("%s: append failed (%s); journal cut back to %d bytes", self.path, cause, length)

    def clear(self) -> Path | None:
        """Empty the journal (after a snapshot that holds every change in it). A journal with damaged
        records is moved aside instead of emptied, so its bytes stay for an operator; returns that path."""
        aside = None
        if self.path.exists() and self.read().damaged:
            stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + f"-{time.time_ns() % 10**9:09d}"
            aside = self.path.with_name(f"{self.path.stem}.damaged-{stamp}{self.path.suffix}")
            os.replace(self.path, aside)
            log.error("journal with damaged records moved aside to %s (inspect it, then remove it)", aside)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_bytes(b"")
        os.replace(tmp, self.path)
        fsync_path(self.path.parent)
        return aside

    def set_aside(self) -> list[Path]:
        """Journals moved aside because they held damaged records, oldest first."""
        return sorted(self.path.parent.glob(f"{self.path.stem}.damaged-*{self.path.suffix}"))

    def damage(self) -> list[DamagedRecord]:
        """Every damaged record an operator has not dealt with yet: in the live journal and in the
        journals set aside. Re-read only when one of those files changes (cheap enough per probe)."""
        files = [p for p in [self.path, *self.set_aside()] if p.exists()]
        key = tuple((str(p), st.st_size, st.st_mtime_ns) for p in files for st in [p.stat()])
        cached = _DAMAGE_CACHE.get(str(self.path))
        if cached is not None and cached[0] == key:
            return cached[1]
        found: list[DamagedRecord] = []
        for p in files:
            try:
                found += Journal(p).read().damaged
            except OSError as exc:
                found.append(DamagedRecord(p.name, 0, 0, 0, f"unreadable: {exc}"))
        _DAMAGE_CACHE[str(self.path)] = (key, found)
        return found


_DAMAGE_CACHE: dict[str, tuple[tuple, list[DamagedRecord]]] = {}
_LOGGED: set[tuple] = set()


def _log_damage(path: Path, result: JournalRead) -> None:
    try:
        ino = path.stat().st_ino
    except OSError:
        ino = 0
    for d in result.damaged:
        key = (str(path), ino, d.offset, d.length)
        if key not in _LOGGED:
            _LOGGED.add(key)
            log.error("journal damage skipped, the records after it are kept: %s", d.describe())
    if result.torn_tail_bytes:
        log.warning("%s: ignoring a torn last line (%d bytes): an append that never completed, never "
                    "acknowledged", path, result.torn_tail_bytes)
