"""Crash, damage and full-disk tests of the real server (`rag serve` in its own process, killed with
SIGKILL), and of the snapshot steps: no acknowledged write is ever lost, except the one record an
attacker damaged on disk, and that loss is reported (log, /readyz, metric)."""
from __future__ import annotations

import errno
import re
import resource
import shutil
import signal
from pathlib import Path

import httpx
import pytest

from rag.documents import Document
from test_durability import ServerProcess, share_exported_model, stored_documents

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
    """Under `ulimit -f` the journal (and the snapshots) cannot grow: writes that do not fit get 507,
    those acknowledged all survive kill -9, and the journal stays readable (no torn record)."""
    limit = 20 * 1024
    server = ServerProcess(data_dir, tmp_path / "server.log", env={"RAG_SNAPSHOT_EVERY": "4"},
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
            # Snapshots failed too (each file of a snapshot is bounded as well) and left the previous one.
            assert "snapshot failed" in server.log_tail()
            server.kill()
            assert journal_path(data_dir).stat().st_size <= limit
            assert not list((data_dir / "index").glob(".tmp-snap-*")), "a failed snapshot left its pieces"

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
    expected = {d.id: d.text for d in pipeline.index.documents}
    assert "s0" not in expected and expected["s1"] == "Note 1, replaced."
    return data, pipeline, expected


def _reloaded(tmp_pipeline, data: Path) -> dict[str, str]:
    fresh = tmp_pipeline(data)
    fresh.load(build_from_seeds=False)
    return {d.id: d.text for d in fresh.index.documents}


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

    import rag.index
    import rag.journal

    monkeypatch.setattr(rag.index, "fsync_path", crash_here(rag.index.fsync_path))
    monkeypatch.setattr(rag.journal, "fsync_path", crash_here(rag.journal.fsync_path))
    old_current = (data / "index" / "CURRENT").read_text()
    pipeline.compact()
    monkeypatch.undo()
    new_current = (data / "index" / "CURRENT").read_text()
    assert new_current != old_current and journal_path(data).read_bytes() == b""

    def state(image: Path) -> tuple[str, bool, bool]:
        index = image / "index"
        return ((index / "CURRENT").read_text(), (index / new_current).is_dir(),
                journal_path(image).stat().st_size > 0)

    states = [state(image) for image in images]
    assert (old_current, True, True) in states, "no image with the snapshot written but CURRENT not flipped"
    assert (new_current, True, True) in states, "no image with CURRENT flipped but the journal not emptied"
    for image, st in zip(images, states):
        assert _reloaded(tmp_pipeline, image) == expected, (image.name, st)


@pytest.mark.parametrize("where", ["vectors", "fsync"])
def test_a_snapshot_that_runs_out_of_space_leaves_the_previous_one_and_the_journal(
        seed_data_dir, tmp_path, tmp_pipeline, monkeypatch, where):
    """ENOSPC at each step of a snapshot save: the save fails, its pieces are removed, and the previous
    snapshot plus the journal still hold every acknowledged write; the next snapshot succeeds."""
    import rag.index

    data, pipeline, expected = _snapshot_fixture(seed_data_dir, tmp_path, tmp_pipeline)
    index_dir = data / "index"
    old_current = (index_dir / "CURRENT").read_text()
    journal_before = journal_path(data).read_bytes()
    real = rag.index.fsync_path if where == "fsync" else rag.index.write_vector_index
    failed_at = 0
    for k in range(1, 200):
        calls = {"n": 0}

        def fail_kth(*args, _k=k, **kwargs):
            calls["n"] += 1
            if calls["n"] == _k:
                raise OSError(errno.ENOSPC, "No space left on device")
            return real(*args, **kwargs)

        monkeypatch.setattr(rag.index, "fsync_path" if where == "fsync" else "write_vector_index", fail_kth)
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
            assert leftovers == [] and len([p for p in index_dir.glob("snap-*")]) == 1, sorted(
                p.name for p in index_dir.iterdir())
        assert _reloaded(tmp_pipeline, data) == expected, f"after ENOSPC at {where} call {k}"
    assert failed_at >= 1 and (where == "vectors" or failed_at > 5), failed_at
    assert (index_dir / "CURRENT").read_text() != old_current and journal_path(data).read_bytes() == b""
    assert _reloaded(tmp_pipeline, data) == expected
