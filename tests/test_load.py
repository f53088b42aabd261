"""A bounded load test on loopback: 8 client threads, 200 requests mixing questions, searches, writes
(JSON and uploads) and deletes, with snapshots taken mid-stream. Only status and consistency are
asserted, never timing: no 5xx, every answer's citations quote the documents exactly, every
acknowledged write is readable afterwards (also from disk), every delete is gone."""
from __future__ import annotations

import pytest

import random
import shutil
import threading

import httpx

pytestmark = pytest.mark.integration  # real servers under load, with the real model

THREADS = 8
REQUESTS_PER_THREAD = 25
SEED = 7
TOWNS = ["Ardmere", "Belcastle", "Corrowdale", "Dunhallow", "Eskerby", "Fennick", "Glenmoor", "Harrowgate"]
COLOURS = ["amber", "cobalt", "saffron", "teal", "umber", "violet"]
SEED_QUESTIONS = ["What did Peskov say?", "What role has Keir Starmer said the UK is ready to play?",
                  "Hegseth Poland airbase", "What will the weather be in Paris tomorrow?"]


def test_mixed_load_loses_nothing(seed_data_dir, tmp_path, tmp_pipeline, serve_pipeline):
    data_dir = tmp_path / "data"
    shutil.copytree(seed_data_dir, data_dir)
    pipeline = tmp_pipeline(data_dir, snapshot_every=10, rate_limit=0)
    pipeline.load(build_from_seeds=False)
    texts: dict[str, str] = {d.id: d.text for d in pipeline.index.live_documents()}  # every text ever acknowledged
    texts_lock = threading.Lock()
    alive: set[str] = set(texts)
    deleted: set[str] = set()
    problems: list[str] = []
    statuses: dict[int, int] = {}

    with serve_pipeline(pipeline) as client:
        base = str(client.base_url)

        def worker(tid: int) -> None:
            rng = random.Random(SEED * 1000 + tid)
            mine: list[str] = []  # this thread's live documents (ids are never shared between threads)
            # The timeout only turns a stuck server into a failure; nothing here measures time.
            with httpx.Client(base_url=base, timeout=30) as http:
                for n in range(REQUESTS_PER_THREAD):
                    roll = rng.random()
                    try:
                        if roll < 0.30:
                            question = (rng.choice(SEED_QUESTIONS) if not mine or rng.random() < 0.5 else
                                        f"At what temperature does the kiln in {texts[rng.choice(mine)].split()[7]} fire?")
                            r = http.post("/ask", json={"question": question, "top_k": rng.randint(1, 8)})
                            if r.status_code == 200:
                                with texts_lock:
                                    known = dict(texts)
                                for c in r.json()["citations"] + r.json()["passages"]:
                                    if known[c["document_id"]][c["start"]:c["end"]] != c["text"]:
                                        problems.append(f"/ask quoted {c['document_id']} inexactly")
                        elif roll < 0.50:
                            r = http.post("/search", json={"query": rng.choice(TOWNS + COLOURS + ["Peskov"]),
                                                           "mode": rng.choice(["hybrid", "dense", "lexical"])})
                        elif roll < 0.80:
                            doc_id = f"load-{tid}-{n}"
                            town = TOWNS[(tid + n) % len(TOWNS)]
                            text = (f"Load record {tid} {n}: the kiln in {town} fires at {rng.randint(600, 1400)} "
                                    f"degrees with {rng.choice(COLOURS)} glaze.")
                            with texts_lock:
                                texts[doc_id] = text  # known before it can be cited
                            if rng.random() < 0.3:
                                r = http.post("/documents", files={"file": (f"{doc_id}.txt", text.encode(), "text/plain")},
                                              data={"id": doc_id})
                            else:
                                r = http.post("/documents", json={"id": doc_id, "text": text})
                            if r.status_code == 201:
                                if r.json()["documents"] != [{"id": doc_id, "status": "added"}]:
                                    problems.append(f"POST {doc_id}: {r.text[:200]}")
                                mine.append(doc_id)
                                with texts_lock:
                                    alive.add(doc_id)
                                # Read your write: it is searchable at once.
                                hits = http.post("/search", json={"query": town, "filters": {"document_id": doc_id}})
                                if hits.status_code != 200 or not hits.json()["passages"]:
                                    problems.append(f"{doc_id} acknowledged but not searchable: {hits.text[:200]}")
                        elif roll < 0.92 and mine:
                            doc_id = mine.pop(rng.randrange(len(mine)))
                            r = http.delete(f"/documents/{doc_id}")
                            if r.status_code == 204:
                                with texts_lock:
                                    alive.discard(doc_id)
                                    deleted.add(doc_id)
                            else:
                                mine.append(doc_id)
                        else:
                            r = http.get("/documents", params={"offset": rng.randint(0, 20), "limit": 10})
                    except httpx.HTTPError as exc:  # a stuck or dead server: stop this client
                        problems.append(f"thread {tid} request {n}: {exc!r}")
                        return
                    with texts_lock:
                        statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
                    if r.status_code >= 500:
                        problems.append(f"{r.request.method} {r.request.url.path} -> {r.status_code} {r.text[:200]}")

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(THREADS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

        assert not problems, problems[:10]
        assert sum(statuses.values()) == THREADS * REQUESTS_PER_THREAD, statuses
        assert set(statuses) <= {200, 201, 204}, statuses
        assert len(alive) > 1 + 20 and deleted, (len(alive), len(deleted))

        # No lost writes, no resurrected deletes: over HTTP ...
        for doc_id in alive:
            r = client.get(f"/documents/{doc_id}")
            assert r.status_code == 200 and r.json()["text"] == texts[doc_id], doc_id
        for doc_id in deleted:
            assert client.get(f"/documents/{doc_id}").status_code == 404, doc_id
        listing = client.get("/documents", params={"limit": 200}).json()
        assert listing["total"] == len(alive) and {d["id"] for d in listing["documents"]} == alive
        assert client.get("/readyz").json()["documents"] == len(alive)

        # ... and on disk (snapshot + journal), read by another pipeline while the server still runs.
        reader = tmp_pipeline(data_dir)
        reader.load(build_from_seeds=False)
        assert {d.id: d.text for d in reader.index.live_documents()} == {k: texts[k] for k in alive}
