"""Background maintenance (fast tier: the stand-in embedder): the full checksums a start leaves for
later run in a thread at nice 10 and leave a damaged segment out of search."""
from __future__ import annotations

import os
import threading
import time

from rag.documents import Document
from rag.maintenance import Maintenance


def test_background_checksums_run_at_nice_10_and_leave_a_damaged_segment_out(fake_pipeline, tmp_path, monkeypatch):
    data_dir = tmp_path / "data"
    p = fake_pipeline(data_dir, snapshot_every=1, background_merge=False)
    p.ingest_documents([Document(id="a", source="a.txt", title="A", text="Ferries cross the bay every hour.")])
    p.put_documents([Document(id="b", source="b.txt", title="B", text="The lighthouse was built in 1880.")])
    damaged = p.index.segments[0].name
    p.close()
    vectors = data_dir / "index" / damaged / "sentence_vectors.npy"
    data = bytearray(vectors.read_bytes())
    data[-3] ^= 0xFF  # the same size: a start checks sizes only
    vectors.write_bytes(bytes(data))

    niceness: list[int] = []
    real_verify = Maintenance.verify

    def verify(self):
        niceness.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
        return real_verify(self)

    monkeypatch.setattr(Maintenance, "verify", verify)
    q = fake_pipeline(data_dir, snapshot_every=1)
    q.load(build_from_seeds=False)
    assert {s.name for s in q.index.segments} >= {damaged}  # served until the checksums are read
    assert not q.store.maintenance.checksums_verified
    q.store.maintenance.wake()
    deadline = time.monotonic() + 30
    while not q.store.maintenance.checksums_verified and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [name for name, _, _ in q.index.damaged] == [damaged]
    assert damaged not in {s.name for s in q.index.segments}
    assert [d.id for d in q.index.live_documents()] == ["b"]
    assert niceness == [max(os.nice(0), 10)]
