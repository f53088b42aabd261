"""The write-ahead journal on its own (no model, no server): checksummed records, damage that is
skipped and reported without hiding later records, torn tails, the first (checksum-less) format,
and appends that fail part-way (short writes, a full disk, a failed fsync) leaving the file as it was."""
from __future__ import annotations

import errno
import json
import os

import pytest

from rag.documents import Document
from rag.errors import DiskFullError, StorageError
from rag.journal import Change, Journal


def put(seq: int, doc_id: str, text: str) -> Change:
    return Change(seq=seq, op="put", document=Document(id=doc_id, source=f"api/{doc_id}", title=doc_id.upper(),
                                                      text=text, metadata={"n": seq, "tags": ["a", "ü"]}))


def delete(seq: int, doc_id: str) -> Change:
    return Change(seq=seq, op="delete", document_id=doc_id)


RECORDS = [put(1, "a", "Alpha text."), put(2, "b", "Beta: \"quoted\" — ünïcode\nand a newline."),
           delete(3, "a"), put(4, "c", "Gamma {\"v\":2, looks like a record} text.")]


@pytest.fixture
def journal(tmp_path) -> Journal:
    return Journal(tmp_path / "index" / "journal.jsonl")


def test_round_trip_keeps_every_field_and_lines_stay_inspectable_json(journal):
    journal.append(RECORDS[:2])
    journal.append(RECORDS[2:])
    read = journal.read()
    assert read.changes == RECORDS and read.damaged == [] and read.torn_tail_bytes == 0
    assert journal.read(after=2).changes == RECORDS[2:]
    assert journal.last_seq() == 4
    for line in journal.path.read_bytes().splitlines():
        record = json.loads(line)  # plain JSON, one record a line
        assert record["v"] == 2 and len(record["crc"]) == 8


def lines_of(data: bytes) -> list[tuple[int, int]]:
    """(start, end) of each line's content, newline excluded."""
    out, start = [], 0
    for line in data.split(b"\n")[:-1]:
        out.append((start, start + len(line)))
        start += len(line) + 1
    return out


def test_a_damaged_byte_anywhere_loses_only_its_own_record(journal):
    """Every byte of a three-record journal, changed four ways: the records whose bytes are intact are
    all read (a damaged newline merges two lines, and both records are still recovered), the damaged
    one never is, and the damage is always reported where it is."""
    journal.append(RECORDS[:3])
    clean = journal.path.read_bytes()
    spans = lines_of(clean)
    for pos in range(len(clean)):
        for new in {clean[pos] ^ 0x01, clean[pos] ^ 0x80, ord("\n"), 0} - {clean[pos]}:
            damaged = bytearray(clean)
            damaged[pos] = new
            journal.path.write_bytes(bytes(damaged))
            read = journal.read()
            expected = [c for c, (s, e) in zip(RECORDS, spans) if not s <= pos < e]
            assert read.changes == expected, (pos, new)
            assert read.damaged, f"damage at byte {pos} ({clean[pos]:#x} -> {new:#x}) was not reported"
            # Reported where it is (a byte turned into a newline ends the line just before the report).
            assert any(d.offset - 1 <= pos <= d.offset + d.length for d in read.damaged), (pos, read.damaged)


def test_damage_in_the_middle_is_reported_and_later_records_are_kept(journal):
    journal.append(RECORDS)
    data = journal.path.read_bytes()
    second = data.index(b"\n") + 1
    journal.path.write_bytes(data[:second + 40] + b"X" + data[second + 41:])
    read = journal.read()
    assert [c.seq for c in read.changes] == [1, 3, 4]
    (d,) = read.damaged
    assert (d.file, d.line_no, d.offset, d.reason) == ("journal.jsonl", 2, second, "checksum mismatch")
    assert journal.last_seq() == 4
    # Appends after damage are read too (the repro: a later acknowledged write was lost).
    journal.append([put(5, "d", "Delta.")])
    assert [c.seq for c in journal.read().changes] == [1, 3, 4, 5]


def test_a_torn_last_line_is_dropped_and_the_next_append_starts_clean(journal):
    journal.append(RECORDS[:2])
    whole = journal.path.read_bytes()
    partial = RECORDS[2].to_line()[:-9]
    journal.path.write_bytes(whole + partial)  # a crash mid-append: never acknowledged
    read = journal.read()
    assert read.changes == RECORDS[:2] and read.damaged == [] and read.torn_tail_bytes == len(partial)
    journal.append([RECORDS[3]])
    assert journal.path.read_bytes() == whole + RECORDS[3].to_line()
    assert journal.read().changes == [*RECORDS[:2], RECORDS[3]]


def test_a_damaged_final_newline_keeps_the_acknowledged_record_and_is_repaired(journal):
    journal.append(RECORDS[:2])
    data = journal.path.read_bytes()
    journal.path.write_bytes(data[:-1] + b"\x00")
    read = journal.read()
    assert read.changes == RECORDS[:2] and len(read.damaged) == 1 and read.torn_tail_bytes == 0
    journal.append([RECORDS[2]])
    assert journal.path.read_bytes() == data + RECORDS[2].to_line()


def test_first_format_lines_without_checksums_are_still_read(journal):
    legacy = [json.dumps({"seq": 1, "op": "put", "document": {"id": "old", "source": "s", "title": "t",
                                                              "text": "Old text.", "metadata": {}}}),
              '{"seq": 2, "op": "put", "document": {"id": "bro',  # damaged: no longer JSON
              json.dumps({"seq": 3, "op": "delete", "document_id": "gone"})]
    journal.path.parent.mkdir(parents=True)
    journal.path.write_text("\n".join(legacy) + "\n")
    journal.append([put(4, "new", "New text.")])  # a new server appends to an old journal
    read = journal.read()
    assert [(c.seq, c.op) for c in read.changes] == [(1, "put"), (3, "delete"), (4, "put")]
    assert read.changes[0].document.text == "Old text."
    assert [(d.line_no, d.reason) for d in read.damaged] == [(2, "not a journal record")]


def test_clear_moves_a_damaged_journal_aside_and_keeps_its_bytes(journal):
    journal.append(RECORDS)
    assert journal.clear() is None and journal.path.read_bytes() == b"" and journal.set_aside() == []
    journal.append(RECORDS)
    data = bytearray(journal.path.read_bytes())
    data[0] ^= 0x01
    journal.path.write_bytes(bytes(data))
    assert len(journal.damage()) == 1
    aside = journal.clear()
    assert aside is not None and aside.read_bytes() == bytes(data) and aside.name.startswith("journal.damaged-")
    assert journal.path.read_bytes() == b"" and journal.set_aside() == [aside]
    (d,) = journal.damage()  # still reported until an operator removes the file
    assert d.file == aside.name and d.line_no == 1
    aside.unlink()
    assert journal.damage() == []


# -- appends that fail part-way ------------------------------------------------------------
@pytest.fixture
def written(journal) -> bytes:
    journal.append(RECORDS[:2])
    return journal.path.read_bytes()


def test_short_writes_are_completed(journal, written, monkeypatch):
    real_write = os.write
    calls = []

    def dribble(fd, data):
        calls.append(len(data))
        return real_write(fd, bytes(data[:7]))

    monkeypatch.setattr(os, "write", dribble)
    journal.append(RECORDS[2:])
    monkeypatch.undo()
    assert len(calls) > 2
    assert journal.path.read_bytes() == written + b"".join(c.to_line() for c in RECORDS[2:])
    assert journal.read().changes == RECORDS


@pytest.mark.parametrize("code, kind", [(errno.ENOSPC, DiskFullError), (errno.EFBIG, DiskFullError),
                                        (errno.EDQUOT, DiskFullError), (errno.EIO, StorageError)])
def test_a_write_that_fails_part_way_leaves_the_journal_as_it_was(journal, written, monkeypatch, code, kind):
    real_write = os.write
    state = {"calls": 0}

    def fail_after_some(fd, data):
        state["calls"] += 1
        if state["calls"] == 1:
            return real_write(fd, bytes(data[:25]))  # part of the first record reaches the file
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "write", fail_after_some)
    with pytest.raises(kind) as info:
        journal.append(RECORDS[2:])
    monkeypatch.undo()
    assert (code == errno.EIO) != isinstance(info.value, DiskFullError)
    assert "not applied" in str(info.value)
    assert journal.path.read_bytes() == written
    journal.append(RECORDS[2:])  # and the journal takes the next append as usual
    assert journal.read().changes == RECORDS


def test_a_failed_fsync_is_not_acknowledged_and_the_append_is_cut_back(journal, written, monkeypatch):
    real_fsync = os.fsync
    state = {"failed": False}

    def fsync_fails_once(fd):
        if not state["failed"]:
            state["failed"] = True
            raise OSError(errno.EIO, "Input/output error")
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync_fails_once)
    with pytest.raises(StorageError) as info:
        journal.append(RECORDS[2:])
    assert not isinstance(info.value, DiskFullError)
    monkeypatch.undo()
    assert journal.path.read_bytes() == written


def test_no_space_for_a_new_journal_leaves_an_empty_one(journal, monkeypatch):
    monkeypatch.setattr(os, "write", lambda fd, data: (_ for _ in ()).throw(OSError(errno.ENOSPC, "No space")))
    with pytest.raises(DiskFullError):
        journal.append(RECORDS)
    monkeypatch.undo()
    assert journal.path.read_bytes() == b"" and journal.read().changes == []


def test_storage_errors_map_to_507_and_503():
    from server.errors import status_for

    assert status_for(DiskFullError("full")) == 507
    assert status_for(StorageError("fsync failed")) == 503


def test_a_vector_file_that_does_not_fit_raises_instead_of_being_cut_short(tmp_path):
    """FAISS's own file writer ignored a failed final flush: under `ulimit -f` it left a cut-short
    chunks.faiss that a snapshot then recorded as good. The write must raise (EFBIG) instead."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(f"""
        import errno, resource, signal
        import faiss, numpy as np
        from rag.vectors import write_vector_index
        index = faiss.IndexFlatIP(64)
        index.add(np.ones((400, 64), dtype="float32"))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (50_000, 50_000))
        try:
            write_vector_index(index, {str(tmp_path / 'v.faiss')!r})
        except OSError as exc:
            print("raised", errno.errorcode[exc.errno])
        else:
            print("returned")
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert out.stdout.strip() == "raised EFBIG", out.stdout + out.stderr
