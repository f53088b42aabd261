"""Crash, damage and full-disk tests of the real server (`rag serve` in its own process, killed with
SIGKILL), and of the snapshot steps: no acknowledged write is ever lost, except the one record an
attacker damaged on disk, and that loss is reported (log, /readyz, metric)."""
from __future__ import annotations

import errno
import json
import os
import random
import re
import resource
import shutil
import signal
import threading
import zlib
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, precondition, rule, run_state_machine_as_test

from rag.documents import Document
from test_durability import SEED, ServerProcess, next_op, send, share_exported_model, stored_documents

pytestmark = pytest.mark.integration


def journal_path(data_dir: Path) -> Path:
    return data_dir / "index" / "journal.jsonl"


def damaged_metric(client: httpx.Client, base: str) -> float:
    text = client.get(f"{base}/metrics").text
    return float(re.search(r"^rag_journal_damaged_records (\S+)$", text, re.M).group(1))


@pytest.fixture
def data_dir(seed_data_dir, embedder, tmp_path) -> Path:
    out = tmp_path / "data"
    shutil.copytree(seed_data_dir, out)
    share_exported_model(embedder, out)
    return out


def test_a_damaged_journal_record_hides_nothing_after_it(data_dir, tmp_path):
    """The issue's repro: three POSTs, kill -9, the first byte of the journal's first line changed,
    restart: documents 2 and 3 are there and the damage is reported; a new POST, SIGTERM (which
    compacts), restart: it is still there, and the damaged bytes were kept aside."""
    server = ServerProcess(data_dir, tmp_path / "server.log", env={"RAG_SNAPSHOT_EVERY": "100"})
    texts = {f"doc-{i}": f"Record {i}: the harbour light number {i * 11} was repaired." for i in (1, 2, 3)}
    with httpx.Client(timeout=30) as client:
        try:
            server.start()
            assert server.wait_readyz(client).json()["journal_damaged"] == 0
            for doc_id, text in texts.items():
                assert client.post(f"{server.base_url}/documents", json={"id": doc_id, "text": text}).status_code == 201
            server.kill()
            journal = journal_path(data_dir)
            data = bytearray(journal.read_bytes())
            assert len(data.splitlines()) == 3
            data[0] = ord("X")
            journal.write_bytes(bytes(data))

            server.start()
            ready = server.wait_readyz(client)
            assert ready.status_code == 200, ready.text
            body = ready.json()
            assert body["journal_damaged"] == 1, body
            (record,) = body["journal_damage"]["records"]
            assert (record["file"], record["line"], record["offset"]) == ("journal.jsonl", 1, 0)
            assert damaged_metric(client, server.base_url) == 1
            assert "journal damage skipped" in server.log_tail()
            base = server.base_url
            assert client.get(f"{base}/documents/doc-1").status_code == 404
            for doc_id in ("doc-2", "doc-3"):
                assert client.get(f"{base}/documents/{doc_id}").json()["text"] == texts[doc_id]

            r = client.post(f"{base}/documents", json={"id": "doc-4", "text": "Record 4: written after the damage."})
            assert r.status_code == 201, r.text
            assert server.stop() in (0, -signal.SIGTERM), server.log_tail()
            (aside,) = sorted(journal.parent.glob("journal.damaged-*.jsonl"))
            assert aside.read_bytes().startswith(bytes(data)), "the damaged bytes are kept for the operator"
            assert journal.read_bytes() == b""

            server.start()
            body = server.wait_readyz(client).json()
            stored = stored_documents(client, server.base_url)
            assert {k: stored.get(k) for k in ("doc-2", "doc-3")} == {k: texts[k] for k in ("doc-2", "doc-3")}
            assert stored["doc-4"] == "Record 4: written after the damage."
            assert "doc-1" not in stored
            # Still reported after the restart, until an operator removes the file set aside.
            assert body["journal_damaged"] == 1 and body["journal_damage"]["set_aside"] == [aside.name], body
        finally:
            server.kill()


def limit_file_size(max_bytes: int):
    """A stand-in for a full disk: files the server writes cannot grow past `max_bytes`. SIGXFSZ is
    ignored so the write fails with EFBIG instead of killing the process."""

    def preexec() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_bytes, max_bytes))

    return preexec


def test_a_full_disk_refuses_writes_and_loses_no_acknowledged_one(data_dir, tmp_path):
    """Under `ulimit -f` the journal (and a flushed segment) cannot grow: writes that do not fit get
    507, those acknowledged all survive kill -9, and the journal stays readable (no torn record)."""
    limit = 20 * 1024
    # A flush after 20 writes: their segment's sentence vectors (~30 KB) do not fit either.
    server = ServerProcess(data_dir, tmp_path / "server.log", env={"RAG_SNAPSHOT_EVERY": "20"},
                           preexec_fn=limit_file_size(limit))
    acknowledged: dict[str, str] = {}
    refused: list[str] = []
    with httpx.Client(timeout=30) as client:
        try:
            server.start()
            assert server.wait_readyz(client).status_code == 200, server.log_tail()
            for i in range(80):
                doc_id = f"full-{i}"
                text = f"Entry {i} of the filling disk. " + " ".join(f"word{i}x{j}" for j in range(60)) + "."
                r = client.post(f"{server.base_url}/documents", json={"id": doc_id, "text": text})
                if r.status_code == 201:
                    assert not refused, f"{doc_id} accepted after a refusal: the journal was not cut back"
                    acknowledged[doc_id] = text
                else:
                    assert r.status_code == 507, (r.status_code, r.text)
                    assert "no space" in r.json()["detail"] and "not applied" in r.json()["detail"]
                    refused.append(doc_id)
                    if len(refused) == 3:
                        break
            assert acknowledged and len(refused) == 3, (len(acknowledged), server.log_tail())
            assert client.get(f"{server.base_url}/documents/{refused[0]}").status_code == 404
            # The flush failed too (each file of a segment is bounded as well) and left the previous manifest.
            assert "flush failed" in server.log_tail()
            server.kill()
            assert journal_path(data_dir).stat().st_size <= limit
            assert not list((data_dir / "index").glob(".tmp-seg-*")), "a failed flush left its pieces"

            server.preexec_fn = None  # room again
            server.start()
            ready = server.wait_readyz(client)
            assert ready.status_code == 200, (ready.text, server.log_tail())
            assert ready.json()["journal_damaged"] == 0, ready.text
            stored = stored_documents(client, server.base_url)
            assert {k: stored.get(k) for k in acknowledged} == acknowledged
            assert not set(refused) & set(stored)
        finally:
            server.kill()


# -- a crash, or a full disk, at every step of a snapshot -------------------------------------
def _snapshot_fixture(seed_data_dir, tmp_path, tmp_pipeline):
    data = tmp_path / "data"
    shutil.copytree(seed_data_dir, data)
    pipeline = tmp_pipeline(data, snapshot_every=1000)
    pipeline.load(build_from_seeds=False)
    pipeline.put_documents([Document(id=f"s{i}", source=f"api/s{i}", title=f"S{i}",
                                     text=f"Snapshot step note {i}: the ferry leaves at {i + 6} o'clock.")
                            for i in range(3)])
    pipeline.delete_document("s0")
    pipeline.put_documents([Document(id="s1", source="api/s1", title="S1", text="Note 1, replaced.")])
    expected = {d.id: d.text for d in pipeline.index.live_documents()}
    assert "s0" not in expected and expected["s1"] == "Note 1, replaced."
    return data, pipeline, expected


def _reloaded(tmp_pipeline, data: Path) -> dict[str, str]:
    fresh = tmp_pipeline(data)
    fresh.load(build_from_seeds=False)
    return {d.id: d.text for d in fresh.index.live_documents()}


def test_a_crash_at_any_step_of_a_snapshot_loses_no_acknowledged_write(seed_data_dir, tmp_path, tmp_pipeline,
                                                                       monkeypatch):
    """The files exactly as a crash would leave them (what the process wrote so far, as kill -9
    leaves it), captured before every fsync of a snapshot and of the journal's clearing: among
    them the new snapshot written but CURRENT not yet flipped, and CURRENT flipped but the journal
    not yet emptied. Each one, loaded, holds every acknowledged write."""
    data, pipeline, expected = _snapshot_fixture(seed_data_dir, tmp_path, tmp_pipeline)
    images: list[Path] = []

    def crash_here(real):
        def wrapped(path):
            image = tmp_path / f"crash-{len(images):03d}"
            shutil.copytree(data / "index", image / "index")
            images.append(image)
            return real(path)
        return wrapped

    import rag.journal
    import rag.manifest
    import rag.snapshot

    monkeypatch.setattr(rag.snapshot, "fsync_path", crash_here(rag.snapshot.fsync_path))
    monkeypatch.setattr(rag.manifest, "fsync_path", crash_here(rag.manifest.fsync_path))
    monkeypatch.setattr(rag.journal, "fsync_path", crash_here(rag.journal.fsync_path))
    old_current = (data / "index" / "CURRENT").read_text()
    pipeline.compact()
    monkeypatch.undo()
    new_current = (data / "index" / "CURRENT").read_text()
    assert new_current != old_current and journal_path(data).read_bytes() == b""

    def state(image: Path) -> tuple[str, bool, bool]:
        index = image / "index"
        return ((index / "CURRENT").read_text(), (index / new_current).is_file(),
                journal_path(image).stat().st_size > 0)

    states = [state(image) for image in images]
    assert (old_current, True, True) in states, "no image with the manifest written but CURRENT not flipped"
    assert (new_current, True, True) in states, "no image with CURRENT flipped but the journal not emptied"
    for image, image_state in zip(images, states):
        assert _reloaded(tmp_pipeline, image) == expected, (image.name, image_state)


@pytest.mark.parametrize("where", ["vectors", "fsync"])
def test_a_snapshot_that_runs_out_of_space_leaves_the_previous_one_and_the_journal(
        seed_data_dir, tmp_path, tmp_pipeline, monkeypatch, where):
    """ENOSPC at each step of a snapshot save: the save fails, its pieces are removed, and the previous
    snapshot plus the journal still hold every acknowledged write; the next snapshot succeeds."""
    import rag.snapshot

    data, pipeline, expected = _snapshot_fixture(seed_data_dir, tmp_path, tmp_pipeline)
    index_dir = data / "index"
    old_current = (index_dir / "CURRENT").read_text()
    journal_before = journal_path(data).read_bytes()
    segments_before = sorted(p.name for p in index_dir.glob("seg-*"))
    real = rag.snapshot.fsync_path if where == "fsync" else rag.snapshot.write_vector_index
    failed_at = 0
    for k in range(1, 200):
        calls = {"n": 0}

        def fail_kth(*args, _k=k, **kwargs):
            calls["n"] += 1
            if calls["n"] == _k:
                raise OSError(errno.ENOSPC, "No space left on device")
            return real(*args, **kwargs)

        monkeypatch.setattr(rag.snapshot, "fsync_path" if where == "fsync" else "write_vector_index", fail_kth)
        try:
            pipeline.compact()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
            failed_at = k
        finally:
            monkeypatch.undo()
        if failed_at != k:
            break  # k is past the last step: this save went through
        current = (index_dir / "CURRENT").read_text()
        if current == old_current:  # failed before the flip: nothing of the new snapshot is left
            assert journal_path(data).read_bytes() == journal_before
            leftovers = [p.name for p in index_dir.iterdir() if p.name.startswith((".tmp-", ".CURRENT."))]
            assert leftovers == [] and sorted(p.name for p in index_dir.glob("seg-*")) == segments_before, sorted(
                p.name for p in index_dir.iterdir())
        assert _reloaded(tmp_pipeline, data) == expected, f"after ENOSPC at {where} call {k}"
    assert failed_at >= 1 and (where == "vectors" or failed_at > 5), failed_at
    assert (index_dir / "CURRENT").read_text() != old_current and journal_path(data).read_bytes() == b""
    assert _reloaded(tmp_pipeline, data) == expected


# -- the document API as a state machine, with kill -9 and damaged records --------------------
def verified_lines(data: bytes) -> list[tuple[int, bytes]]:
    """(offset, line) of each journal line whose checksum verifies: an independent check of the
    format (CRC-32 of the bytes before `,"crc":`), so the test does not trust the code it tests."""
    out, offset = [], 0
    for line in data.split(b"\n")[:-1]:
        head, sep, tail = line.rpartition(b',"crc":"')
        if sep and re.fullmatch(rb'[0-9a-f]{8}"\}', tail) and zlib.crc32(head) == int(tail[:8], 16):
            out.append((offset, line))
        offset += len(line) + 1
    return out


class Model:
    """What the acknowledged writes say the server holds, and the writes since the last snapshot
    that a damaged journal record can take back (one record: one write)."""

    def __init__(self, initial: dict[str, str]):
        self.initial = dict(initial)
        self.docs = dict(initial)
        self.log: list[tuple[str, str | None]] = []  # every applied write: (id, text or None if deleted)

    def write(self, doc_id: str, text: str | None, journaled: bool = True) -> None:
        if journaled:  # an "unchanged" write journals nothing
            self.log.append((doc_id, text))
        if text is None:
            self.docs.pop(doc_id, None)
        else:
            self.docs[doc_id] = text

    def lose(self, line: bytes, position_from_end: int) -> str | None:
        """The write whose journal record is `line` is lost to damage. Found by the record's content
        (a put's text is unique), not by position alone: a record the client never saw acknowledged
        (in flight at a kill) would shift positions. A repeated delete of one id takes the occurrence
        nearest `position_from_end`. None when no acknowledged write made this record."""
        record = json.loads(line)
        entry = ((record["document"]["id"], record["document"]["text"]) if record["op"] == "put"
                 else (record["document_id"], None))
        matches = [i for i, e in enumerate(self.log) if e == entry]
        if not matches:
            return None
        guess = len(self.log) - position_from_end
        i = min(matches, key=lambda j: abs(j - guess))
        doc_id, _ = self.log.pop(i)
        if not any(d == doc_id for d, _ in self.log[i:]):  # no later write to the same document
            before = [t for d, t in self.log[:i] if d == doc_id]
            value = before[-1] if before else self.initial.get(doc_id)
            if value is None:
                self.docs.pop(doc_id, None)
            else:
                self.docs[doc_id] = value
        return doc_id


IDS = st.sampled_from([f"d{i}" for i in range(5)])
CODES = st.integers(0, 999_999)
WORDS = ["amber", "cobalt", "saffron", "teal", "umber", "violet"]


def record_text(doc_id: str, n: int) -> str:
    return f"Record {doc_id}-{n}: the {WORDS[n % len(WORDS)]} vault opens with code {n:06d}."


class Harness:
    """One server and data directory shared by the state machine's examples (a start costs seconds)."""

    def __init__(self, seed_data_dir: Path, embedder, work: Path):
        self.data_dir = work / "data"
        shutil.copytree(seed_data_dir, self.data_dir)
        share_exported_model(embedder, self.data_dir)
        # Small flushes and a merge of every two segments, in the background: kills land in them too.
        self.server = ServerProcess(self.data_dir, work / "server.log",
                                    env={"RAG_SNAPSHOT_EVERY": "6", "RAG_MERGE_FACTOR": "2", "RAG_FLUSH_SECONDS": "1"})
        self.client = httpx.Client(timeout=60)
        self.counts = {"examples": 0, "acknowledged": 0, "restarts": 0, "damaged_records": 0, "lost": 0}
        self.server.start()
        assert self.server.wait_readyz(self.client).status_code == 200, self.server.log_tail()

    def close(self) -> None:
        self.server.kill()
        self.client.close()


class DocumentAPIMachine(RuleBasedStateMachine):
    """Random add / put / delete / ask over `rag serve`, with kill -9 + restart and a damaged journal
    record + restart. After every restart the server holds exactly what the model says: every
    acknowledged write with its exact text, nothing deleted, and only the damaged record's write lost."""

    harness: Harness
    max_restarts = 2  # per example: a restart costs seconds, writes cost milliseconds

    def __init__(self):
        super().__init__()
        h = self.harness
        self.server, self.client, self.data_dir, self.counts = h.server, h.client, h.data_dir, h.counts
        self.model = Model(stored_documents(self.client, self.server.base_url))
        self.restarts = 0
        self.counts["examples"] += 1

    @property
    def base(self) -> str:
        return self.server.base_url

    def acknowledge(self, doc_id: str, text: str | None, r: httpx.Response, ok: tuple[int, ...]) -> None:
        assert r.status_code in ok, (r.status_code, r.text, self.server.log_tail())
        if text is None:
            self.model.write(doc_id, None)
        else:
            (outcome,) = r.json()["documents"]
            assert (outcome["status"] == "unchanged") == (self.model.docs.get(doc_id) == text), outcome
            self.model.write(doc_id, text, journaled=outcome["status"] != "unchanged")
        self.counts["acknowledged"] += 1

    @rule(doc_id=IDS, n=CODES)
    def add(self, doc_id, n):
        text = record_text(doc_id, n)
        r = self.client.post(f"{self.base}/documents", json={"id": doc_id, "text": text})
        self.acknowledge(doc_id, text, r, (200,) if doc_id in self.model.docs else (201,))

    @rule(doc_id=IDS, n=CODES)
    def put(self, doc_id, n):
        text = record_text(doc_id, n)
        r = self.client.put(f"{self.base}/documents/{doc_id}", json={"text": text})
        self.acknowledge(doc_id, text, r, (200,) if doc_id in self.model.docs else (201,))

    @rule(doc_id=IDS)
    def delete(self, doc_id):
        r = self.client.delete(f"{self.base}/documents/{doc_id}")
        if doc_id in self.model.docs:
            self.acknowledge(doc_id, None, r, (204,))
        else:
            assert r.status_code == 404, r.text

    @rule(doc_id=IDS)
    def ask(self, doc_id):
        r = self.client.post(f"{self.base}/ask", json={"question": "What is the vault code?",
                                                         "filters": {"document_id": doc_id}})
        assert r.status_code == 200, r.text
        body = r.json()
        assert all(p["document_id"] == doc_id for p in body["passages"])
        assert bool(body["passages"]) == (doc_id in self.model.docs)
        for c in body["citations"]:
            assert self.model.docs[doc_id][c["start"]:c["end"]] == c["text"]

    @precondition(lambda self: self.restarts < self.max_restarts)
    @rule()
    def kill_9_and_restart(self):
        self.server.kill()
        self.restart()

    def damageable(self) -> list[tuple[int, bytes]]:
        """The journal's intact records written in this example (the model knows what they were)."""
        journal = journal_path(self.data_dir)
        lines = verified_lines(journal.read_bytes()) if journal.exists() else []
        return lines[max(len(lines) - len(self.model.log), 0):]

    @precondition(lambda self: self.restarts < self.max_restarts and self.damageable())
    @rule(data=st.data())
    def damage_a_record_and_restart(self, data):
        self.server.kill()
        journal = journal_path(self.data_dir)
        raw = bytearray(journal.read_bytes())
        lines = self.damageable()
        k = data.draw(st.integers(0, len(lines) - 1), label="record")
        offset, line = lines[k]
        pos = offset + data.draw(st.integers(0, len(line) - 1), label="byte")
        raw[pos] ^= data.draw(st.integers(1, 255), label="xor")
        journal.write_bytes(bytes(raw))
        lost = self.model.lose(line, len(lines) - k)
        self.counts["damaged_records"] += 1
        self.restart()
        body = self.client.get(f"{self.base}/readyz").json()
        assert body["journal_damaged"] >= self.counts["damaged_records"], (lost, body)

    def restart(self):
        self.server.start()
        r = self.server.wait_readyz(self.client)
        assert r.status_code == 200, (r.text, self.server.log_tail())
        self.restarts += 1
        self.counts["restarts"] += 1
        self.check()

    def check(self):
        stored = stored_documents(self.client, self.base)
        missing = {k for k in self.model.docs if stored.get(k) != self.model.docs[k]}
        back = set(stored) - set(self.model.docs)
        self.counts["lost"] += len(missing)
        assert not missing and not back, (f"acknowledged writes missing or changed: {sorted(missing)}; "
                                          f"deleted documents back: {sorted(back)}\n{self.server.log_tail()}")

    def teardown(self):
        self.check()  # the running server agrees with the model too


def test_document_api_state_machine_with_crashes_and_damage(seed_data_dir, embedder, tmp_path):
    harness = DocumentAPIMachine.harness = Harness(seed_data_dir, embedder, tmp_path)
    try:
        run_state_machine_as_test(DocumentAPIMachine, settings=settings(
            max_examples=int(os.environ.get("RAG_STATE_MACHINE_EXAMPLES", "4")),
            stateful_step_count=int(os.environ.get("RAG_STATE_MACHINE_STEPS", "12")),
            # No shrinking: each replay restarts servers; a failure prints its full step list instead.
            deadline=None, derandomize=True, database=None, phases=[Phase.generate],
            suppress_health_check=list(HealthCheck)))
    finally:
        harness.close()
    counts = harness.counts
    print(f"\nstate machine: {counts}")
    assert counts["restarts"] > 0 and counts["acknowledged"] > 0 and counts["lost"] == 0


def is_record_of(line: bytes, op: tuple) -> bool:
    record = json.loads(line)
    if op[0] == "put":
        return record["op"] == "put" and (record["document"]["id"], record["document"]["text"]) == op[1:]
    return record["op"] == "delete" and record["document_id"] == op[1]


def test_kill_9_rounds_count_what_was_acknowledged_and_lost(seed_data_dir, embedder, tmp_path):
    """Rounds of writes, each ended by SIGKILL while a write is in flight (so appends are cut at
    random points); every third round one intact journal record is also damaged before the restart,
    and every fourth round runs with almost no room left for the journal (short writes, 507).
    Counts what was acknowledged and what came back. `RAG_CRASH_ROUNDS` sets the number of rounds."""
    rounds = int(os.environ.get("RAG_CRASH_ROUNDS", "3"))
    rng = random.Random(SEED)
    harness = Harness(seed_data_dir, embedder, tmp_path)
    server, client = harness.server, harness.client
    model = Model(stored_documents(client, server.base_url))
    seed_ids = set(model.docs)
    counts = {"rounds": rounds, "acknowledged": 0, "in_flight_at_kill": 0, "in_flight_applied": 0,
              "refused_507": 0, "damaged_records": 0, "damaged_unacknowledged": 0, "lost": 0}
    try:
        for round_no in range(1, rounds + 1):
            target, acked, refused, maybe, killer = rng.randint(3, 12), 0, 0, None, None
            for i in range(200):
                op = next_op(rng, model.docs, seed_ids, round_no, i)
                if (acked == target or refused == 3) and killer is None:
                    killer = threading.Timer(rng.uniform(0.0, 0.3), server.kill)
                    killer.start()
                try:
                    r = send(client, server.base_url, op)
                except httpx.TransportError:
                    assert killer is not None, f"the server failed before the kill:\n{server.log_tail()}"
                    maybe = op  # in flight when the server died: applied whole or not at all
                    break
                if r.status_code == 507 and server.preexec_fn is not None:
                    counts["refused_507"] += 1
                    refused += 1
                    continue
                assert r.status_code in (200, 201, 204), (op, r.status_code, r.text)
                journaled = op[0] == "delete" or r.json()["documents"][0]["status"] != "unchanged"
                model.write(op[1], op[2], journaled=journaled)
                acked += 1
            killer.join()
            server.kill()
            counts["acknowledged"] += acked
            counts["in_flight_at_kill"] += maybe is not None
            journal = journal_path(harness.data_dir)
            lines = verified_lines(journal.read_bytes()) if journal.exists() else []
            if maybe is not None and lines and is_record_of(lines[-1][1], maybe):
                model.write(maybe[1], maybe[2])  # its record is whole on disk: it must be applied
                counts["in_flight_applied"] += 1
                maybe = None
            known = lines[max(len(lines) - len(model.log), 0):]
            if round_no % 3 == 0 and known:
                k = rng.randrange(len(known))
                offset, line = known[k]
                raw = bytearray(journal.read_bytes())
                raw[offset + rng.randrange(len(line))] ^= rng.randrange(1, 256)
                journal.write_bytes(bytes(raw))
                if model.lose(line, len(known) - k) is None:
                    counts["damaged_unacknowledged"] += 1  # a record of a write in flight at the kill
                counts["damaged_records"] += 1
            # The next round, every fourth, has about six records' room left in any file it writes.
            room = journal.stat().st_size + 1500 if journal.exists() else 1500
            server.preexec_fn = limit_file_size(room) if (round_no + 1) % 4 == 0 else None
            server.start()
            assert server.wait_readyz(client).status_code == 200, server.log_tail()
            stored = stored_documents(client, server.base_url)
            if maybe is not None and stored != model.docs:
                model.write(maybe[1], maybe[2])  # applied (a snapshot took it in before the kill)
                counts["in_flight_applied"] += 1
            missing = {k for k in model.docs if stored.get(k) != model.docs[k]}
            back = set(stored) - set(model.docs)
            counts["lost"] += len(missing | back)
            assert not missing and not back, (round_no, sorted(missing), sorted(back), server.log_tail())
            ready = client.get(f"{server.base_url}/readyz").json()
            assert ready["journal_damaged"] >= counts["damaged_records"], ready
    finally:
        harness.close()
    print(f"\nkill -9 rounds: {counts}")
