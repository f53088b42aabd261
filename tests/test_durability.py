"""Durability of the live document API: the real server (`rag serve`, a separate process) is killed
with SIGKILL at random points of a stream of writes, some while a write is in flight; after each
restart every acknowledged write is there, exactly, and nothing else changed. A damaged segment
is left out at start and named in /readyz, and `rag check --repair` rebuilds it.
"""
from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from support import REPO, SEEDS, free_port

pytestmark = pytest.mark.integration  # real model in server processes

SEED = int(os.environ.get("RAG_TEST_SEED", "20240611"))
WORDS = ["amber", "cobalt", "saffron", "teal", "umber", "violet", "crimson", "ivory", "jade", "ochre"]


class ServerProcess:
    """`python -m ragcli --data-dir D serve --port P` in its own process."""

    def __init__(self, data_dir: Path, log_path: Path, *, env: dict[str, str] | None = None, preexec_fn=None):
        self.data_dir, self.log_path = data_dir, log_path
        self.env, self.preexec_fn = env or {}, preexec_fn  # extra RAG_* settings; a hook run before exec
        self.proc: subprocess.Popen | None = None
        self.base_url = ""

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
        # Flushes by count only unless a test asks for more: what the journal holds must not depend on timing.
        env.update(HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", RAG_SNAPSHOT_EVERY="5", RAG_RATE_LIMIT="0",
                   RAG_SEED_DIR=str(SEEDS), RAG_FLUSH_SECONDS="86400")
        env.update(self.env)
        port = free_port()
        self.base_url = f"http://127.0.0.1:{port}"
        log = open(self.log_path, "ab")
        log.write(b"\n---- start ----\n")
        self.proc = subprocess.Popen([sys.executable, "-m", "ragcli", "--data-dir", str(self.data_dir), "serve",
                                      "--port", str(port), "--log-level", "warning"],
                                     cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                                     preexec_fn=self.preexec_fn)
        log.close()

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]

    def wait_readyz(self, client: httpx.Client, deadline_s: float = 120) -> httpx.Response:
        """Poll /readyz until it is 200 or reports a load failure (a readiness wait, not a timing check)."""
        deadline = time.monotonic() + deadline_s
        while True:
            assert self.proc.poll() is None, f"server exited with {self.proc.returncode}:\n{self.log_tail()}"
            try:
                r = client.get(f"{self.base_url}/readyz")
                if r.status_code == 200 or "failed" in r.json().get("detail", ""):
                    return r
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"server never answered /readyz:\n{self.log_tail()}"
            time.sleep(0.1)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(30)

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(60)


def share_exported_model(embedder, data_dir: Path) -> None:
    """Speed only: give the server the model export the session's embedder already made (the server
    would export it into DATA_DIR/models on its first start otherwise)."""
    cache = getattr(embedder, "cache_dir", None)
    if cache is not None and Path(cache).is_dir():
        shutil.copytree(cache, data_dir / "models", dirs_exist_ok=True)


def stored_documents(client: httpx.Client, base: str) -> dict[str, str]:
    """Every stored document's id -> text, through the public API (paged listing, then each GET)."""
    ids, offset = [], 0
    while True:
        page = client.get(f"{base}/documents", params={"offset": offset, "limit": 200})
        assert page.status_code == 200, page.text
        docs = page.json()["documents"]
        if not docs:
            break
        ids += [d["id"] for d in docs]
        offset += len(docs)
    out = {}
    for doc_id in ids:
        r = client.get(f"{base}/documents/{doc_id}")
        assert r.status_code == 200, (doc_id, r.text)
        out[doc_id] = r.json()["text"]
    assert len(out) == len(ids), "the listing repeats a document"
    return out


def apply(state: dict[str, str], op: tuple) -> dict[str, str]:
    kind, doc_id, text = op
    new = dict(state)
    if kind == "put":
        new[doc_id] = text
    else:
        new.pop(doc_id, None)
    return new


def send(client: httpx.Client, base: str, op: tuple) -> httpx.Response:
    kind, doc_id, text = op
    if kind == "put":
        return client.post(f"{base}/documents", json={"id": doc_id, "text": text})
    return client.delete(f"{base}/documents/{doc_id}")


def next_op(rng: random.Random, state: dict[str, str], seed_ids: set[str], round_no: int, i: int) -> tuple:
    ours = sorted(set(state) - seed_ids)
    roll = rng.random()
    if ours and roll < 0.15:
        return ("delete", rng.choice(ours), None)
    doc_id = rng.choice(ours) if ours and roll < 0.3 else f"r{round_no}-{i}"
    token = f"zq{round_no}x{i}"
    text = (f"Durability record {token}: the {rng.choice(WORDS)} vault opens with code {rng.randrange(10**6):06d}. "
            f"It was written in round {round_no}.")
    return ("put", doc_id, text)


def check_consistent(client: httpx.Client, base: str, state: dict[str, str], seed_ids: set[str],
                     rng: random.Random) -> None:
    """The served index holds exactly `state`, and answers/search over it are consistent."""
    ready = client.get(f"{base}/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["documents"] == len(state)
    ours = sorted(set(state) - seed_ids)
    for doc_id in rng.sample(ours, min(3, len(ours))):
        token = state[doc_id].split(":")[0].split()[-1]
        hits = client.post(f"{base}/search", json={"query": token, "mode": "lexical", "top_k": 3}).json()["passages"]
        assert hits and hits[0]["document_id"] == doc_id, (doc_id, token, hits[:1])
        assert state[doc_id][hits[0]["start"]:hits[0]["end"]] == hits[0]["text"]
        r = client.post(f"{base}/ask", json={"question": f"What code opens the vault in record {token}?",
                                             "filters": {"document_id": doc_id}})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["passages"] and all(p["document_id"] == doc_id for p in body["passages"])
        for c in body["citations"]:
            assert state[c["document_id"]][c["start"]:c["end"]] == c["text"]
    r = client.post(f"{base}/ask", json={"question": "What did Peskov say?"})
    assert r.status_code == 200 and not r.json()["abstained"], r.text
    for c in r.json()["citations"]:
        assert state[c["document_id"]][c["start"]:c["end"]] == c["text"]


def test_snapshots_mid_stream_keep_every_write(seed_data_dir, tmp_path, tmp_pipeline, serve_pipeline):
    """With snapshot_every=3, writes through the API cross several snapshots; each snapshot is taken
    while the write that triggered it is being committed, and the writer must not block on itself."""
    data_dir = tmp_path / "data"
    shutil.copytree(seed_data_dir, data_dir)
    pipeline = tmp_pipeline(data_dir, snapshot_every=3, rate_limit=0)
    pipeline.load(build_from_seeds=False)
    first_snapshot = (data_dir / "index" / "CURRENT").read_text()
    texts = {f"snap-{i}": f"Snapshot probe {i}: the lantern count is {i * 7}." for i in range(7)}
    with serve_pipeline(pipeline) as client:
        client.timeout = httpx.Timeout(30)  # only turns a writer stuck on its own lock into a failure
        for doc_id, text in texts.items():
            try:
                r = client.post("/documents", json={"id": doc_id, "text": text})
            except httpx.ReadTimeout:
                raise AssertionError(f"POST {doc_id} never answered: the write that triggers a snapshot "
                                     f"(snapshot_every=3) is stuck") from None
            assert r.status_code == 201, r.text
        assert client.delete("/documents/snap-0").status_code == 204
        assert client.get("/readyz").json()["documents"] == 1 + 6
        # 8 changes, a snapshot after every 3: two snapshots so far, two changes in the journal.
        assert (data_dir / "index" / "CURRENT").read_text() != first_snapshot, "no snapshot was written"
        assert len((data_dir / "index" / "journal.jsonl").read_bytes().splitlines()) == 2
    reloaded = tmp_pipeline(data_dir)
    reloaded.load(build_from_seeds=False)
    assert {d.id: d.text for d in reloaded.index.live_documents() if d.id.startswith("snap-")} == {
        k: v for k, v in texts.items() if k != "snap-0"}


def test_acknowledged_writes_survive_kill_9(seed_data_dir, embedder, tmp_path):
    rng = random.Random(SEED)
    data_dir = tmp_path / "data"
    shutil.copytree(seed_data_dir, data_dir)
    share_exported_model(embedder, data_dir)
    server = ServerProcess(data_dir, tmp_path / "server.log")
    modes = ["between", "in_flight", "in_flight"]
    # A write takes well under a second; the timeout only turns a hung server into a failure.
    with httpx.Client(timeout=30) as client:
        try:
            server.start()
            assert server.wait_readyz(client).status_code == 200, server.log_tail()
            state = stored_documents(client, server.base_url)
            seed_ids = set(state)
            assert len(seed_ids) == 1
            op_no, written = 0, set(seed_ids)
            for round_no, mode in enumerate(modes, start=1):
                acked_target = rng.randint(5, 25)
                acked = 0
                maybe = None  # the op in flight when the server died: applied or not, never half-applied
                killer = None
                while True:
                    op = next_op(rng, state, seed_ids, round_no, op_no)
                    op_no += 1
                    if acked == acked_target:
                        if mode == "between":
                            server.kill()
                            break
                        if killer is None:
                            # Mostly during the next write; sometimes a few writes (or a snapshot) later.
                            killer = threading.Timer(rng.uniform(0.0, 0.4), server.kill)
                            killer.start()
                    try:
                        r = send(client, server.base_url, op)
                    except httpx.TransportError as exc:
                        assert killer is not None, (
                            f"round {round_no}: {op[0]} {op[1]} failed before any kill ({exc!r}); a write that "
                            f"hangs means the server is stuck (server alive: {server.proc.poll() is None})\n"
                            f"{server.log_tail()}")
                        maybe = op
                        break
                    assert r.status_code in (200, 201, 204), (op, r.status_code, r.text, server.log_tail())
                    state = apply(state, op)
                    written.add(op[1])
                    acked += 1
                if killer is not None:
                    killer.join()
                server.kill()
                assert acked >= acked_target

                server.start()
                assert server.wait_readyz(client).status_code == 200, server.log_tail()
                stored = stored_documents(client, server.base_url)
                allowed = [state] + ([apply(state, maybe)] if maybe else [])
                assert stored in allowed, (
                    f"round {round_no} ({mode}): acknowledged state not recovered; missing "
                    f"{sorted(set(state) - set(stored))}, unexpected {sorted(set(stored) - set(state))}, "
                    f"different text {sorted(k for k in state if k in stored and stored[k] != state[k])}, "
                    f"in flight {maybe and maybe[:2]}")
                state = stored
                check_consistent(client, server.base_url, state, seed_ids, rng)
                # Deleted documents stay deleted: their ids answer 404.
                written |= set(state)
                for gone in written - set(state):
                    assert client.get(f"{server.base_url}/documents/{gone}").status_code == 404, gone
            assert len(state) > len(seed_ids) + 5

            # A clean stop (SIGTERM) compacts: the journal is left empty.
            journal = data_dir / "index" / "journal.jsonl"
            for i in range(2):  # one write, or two if the first one triggered a snapshot
                if journal.exists() and journal.stat().st_size:
                    break
                r = client.post(f"{server.base_url}/documents", json={"id": f"last-{i}", "text": f"Last {i}."})
                assert r.status_code == 201, r.text
            assert journal.stat().st_size > 0
            assert server.stop() in (0, -signal.SIGTERM), server.log_tail()  # uvicorn re-raises the signal
            assert journal.stat().st_size == 0, "a clean stop leaves a snapshot and an empty journal"

        finally:
            server.kill()


def test_a_damaged_segment_is_left_out_reported_and_repaired_with_the_cli(seed_data_dir, embedder, tmp_path, tmp_pipeline,
                                                                serve_pipeline):
    data_dir = tmp_path / "data"
    shutil.copytree(seed_data_dir, data_dir)
    share_exported_model(embedder, data_dir)
    pipeline = tmp_pipeline(data_dir, rate_limit=0)
    pipeline.load(build_from_seeds=False)
    with serve_pipeline(pipeline) as client:
        assert client.post("/documents", json={"id": "extra", "text": "An extra note on ferries."}).status_code == 201
    # The stopped server flushed; cut the seed's segment's vector file short.
    index_dir = data_dir / "index"
    manifest = json.loads((index_dir / (index_dir / "CURRENT").read_text().strip()).read_text())
    seed_segment = index_dir / manifest["segments"][0]["name"]
    faiss_file = seed_segment / "chunks.faiss"
    faiss_file.write_bytes(faiss_file.read_bytes()[: faiss_file.stat().st_size // 2])

    with serve_pipeline(tmp_pipeline(data_dir, rate_limit=0)) as client:
        body = client.get("/readyz").json()  # up, degraded: the damaged segment is left out and named
        assert body["status"] == "degraded" and body["damaged_segments"] == 1, body
        (damage,) = body["segment_damage"]["segments"]
        assert damage["name"] == seed_segment.name and "chunks.faiss" in damage["reason"]
        assert "rag check --repair" in body["segment_damage"]["action"]
        assert client.get("/documents/extra").status_code == 200  # the other segment still serves
        r = client.post("/ask", json={"question": "What did Peskov say?"})
        assert r.status_code == 200 and all(c["document_id"] == "extra" for c in r.json()["citations"]), r.text
        r = client.post("/documents", json={"id": "while-broken", "text": "Writes still work."})
        assert r.status_code == 201, r.text

    # What the report says to do: `rag check` finds it, `rag check --repair` rebuilds the segment from
    # its own stored documents (the CLI's entry point, in this process).
    from ragcli.main import main

    assert main(["--data-dir", str(data_dir), "check"]) == 1
    assert main(["--data-dir", str(data_dir), "check", "--repair"]) == 0
    assert main(["--data-dir", str(data_dir), "check"]) == 0

    rebuilt = tmp_pipeline(data_dir, rate_limit=0)
    with serve_pipeline(rebuilt) as client:
        assert client.get("/readyz").status_code == 200
        assert client.get("/readyz").json()["damaged_segments"] == 0
        assert client.get("/documents/extra").json()["text"] == "An extra note on ferries."
        assert client.get("/documents/while-broken").status_code == 200
        r = client.post("/ask", json={"question": "What did Peskov say?"})
        assert r.status_code == 200 and not r.json()["abstained"], r.text
        assert client.post("/documents", json={"id": "after", "text": "Writes work again."}).status_code == 201
