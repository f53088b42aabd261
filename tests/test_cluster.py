"""Ingestion and serving on a real Ray cluster: a head and a worker node on loopback addresses
(127.0.0.2, 127.0.0.3; 1 CPU each, a small object store, their own temp dir, workers not niced;
see cluster/localcluster.py), stopped with `cluster.shutdown()`, never `ray stop`."""
from __future__ import annotations

import os
import signal
import time

import httpx
import numpy as np
import pytest

from rag.config import Settings
from rag.pipeline import Pipeline

from support import SEEDS, SQUAD, running_server, wait_ready

ray = pytest.importorskip("ray", reason="the cluster extra: pip install -e '.[cluster]'")
pytestmark = pytest.mark.integration

HEAD, WORKER = "127.0.0.2", "127.0.0.3"


@pytest.fixture(scope="session")
def ray_cluster():
    from cluster.localcluster import local_cluster

    with local_cluster(nodes=2, cpus=1) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def squad():
    from eval.datasets import load_squad

    data = load_squad(SQUAD, limit_articles=2)
    return data.corpus[:120], [i.question for i in data.items if i.gold_documents[0] in
                               {d.id for d in data.corpus[:120]}][:20]


@pytest.fixture(scope="module")
def settings(tmp_path_factory):
    # Shards reserve a quarter CPU, embedding actors three quarters: one actor per node beside them.
    return Settings(data_dir=tmp_path_factory.mktemp("cluster"), seed_dir=SEEDS, rate_limit=0,
                    cluster_shard_cpus=0.25, cluster_embed_cpus=0.75, cluster_timeout_s=5)


@pytest.fixture(scope="module")
def served(ray_cluster, settings, squad):
    from cluster import serving
    from cluster.app import create_cluster_app
    from cluster.ingestion import ingest_documents

    report = ingest_documents(settings, squad[0], 2)
    plan = serving.deploy(settings)
    pipeline = serving.pipeline(settings, plan)
    pipeline.load()  # every shard's replica up (each loads its index and the model) before the app starts
    app = create_cluster_app(pipeline, replicas=lambda: serving.replicas(plan))
    with running_server(app) as base_url, httpx.Client(base_url=base_url, timeout=60) as client:
        wait_ready(client)
        yield client, pipeline, report, plan


@pytest.fixture(scope="module")
def unsharded(tmp_path_factory, embedder, squad):
    # The coordinator abstains by the base threshold (a corpus-calibrated one needs pseudo-questions
    # asked of the whole corpus, which no shard holds: docs/cluster.md); the reference does the same.
    pipeline = Pipeline(Settings(data_dir=tmp_path_factory.mktemp("one"), seed_dir=SEEDS, abstain_null_quantile=0),
                        embedder=embedder)
    pipeline.ingest_documents(squad[0])
    pipeline.load(build_from_seeds=False)
    return pipeline


def test_embedding_spread_over_both_nodes_and_each_shard_was_built_on_its_own(served, squad):
    _, _, report, plan = served
    assert plan["nodes"] == [HEAD, WORKER]
    assert set(report.embedded_by_node) == {HEAD, WORKER}, report.embedded_by_node
    assert sum(report.embedded_by_node.values()) == report.texts
    assert sorted(r["shard"] for r in report.shards) == [0, 1]
    assert all(r["documents"] > 0 for r in report.shards)
    assert sum(r["documents"] for r in report.shards) == len(squad[0])


def test_the_cluster_vectors_equal_in_process_ones(served, settings, embedder):
    from cluster.shard import shard_dir

    for shard in range(2):
        s = Settings(**{**settings.model_dump(), "data_dir": shard_dir(settings.data_dir, shard)})
        with Pipeline(s, embedder=embedder) as pipeline:
            index = pipeline.load(build_from_seeds=False)
            texts = [index.chunks.text(r) for r in range(len(index.chunks))]
            vectors = index.vectors.reconstruct_batch(np.arange(len(index.chunks)))
            np.testing.assert_allclose(vectors, embedder.encode(texts), atol=1e-5)


def test_two_shards_answer_as_the_unsharded_index(served, unsharded, squad):
    client, *_ = served
    for question in squad[1]:
        got = client.post("/search", json={"query": question, "top_k": 5}).json()["passages"]
        want = [p.model_dump(mode="json") for p in unsharded.search(question, 5)]
        assert [(p["chunk_id"], p["text"]) for p in got] == [(p["chunk_id"], p["text"]) for p in want]
        np.testing.assert_allclose([p["score"] for p in got], [p["score"] for p in want], atol=1e-4)
    for question in squad[1][:8]:
        got = client.post("/ask", json={"question": question}).json()
        want = unsharded.ask(question)
        assert got["answer"] == want.answer
        assert [c["text"] for c in got["citations"]] == [c.text for c in want.citations]


def test_readyz_and_metrics_show_shards_and_replicas(served):
    client, *_ = served
    body = client.get("/readyz").json()
    assert body["status"] == "ready"
    assert [(s["shard"], s["status"], s["node"], s["replicas"]) for s in body["shards"]] == \
           [(0, "up", HEAD, {"RUNNING": 1}), (1, "up", WORKER, {"RUNNING": 1})]
    metrics = client.get("/metrics").text
    assert 'rag_cluster_shard_up{shard="1"} 1.0' in metrics
    assert 'rag_cluster_shard_replicas{shard="0",state="RUNNING"} 1.0' in metrics


def _wait_for(condition, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            value = condition()
        except Exception:  # noqa: BLE001 - not yet
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.5)


def test_a_write_lands_in_its_shard_and_survives_kill_9(served):
    from cluster.shard import shard_of

    client, pipeline, *_ = served
    doc = {"id": "cluster-note-7", "title": "Harbour quokkas",
           "text": "The quokka orchestra of Zanzibar rehearses every Tuesday in the old harbour."}
    assert client.post("/documents", json=doc).status_code == 201
    owner = shard_of(doc["id"], 2)
    assert pipeline.shards.call(owner, "document", doc["id"]).text == doc["text"]
    assert pipeline.shards.call(1 - owner, "document", doc["id"]) is None
    pid = pipeline.shards.call(owner, "info")["pid"]
    os.kill(pid, signal.SIGKILL)
    info = _wait_for(lambda: (i := pipeline.shards.call(owner, "info"))["pid"] != pid and i, 120,
                     "the shard's replica to restart")
    assert info["documents"] > 0
    hits = client.post("/search", json={"query": "quokka orchestra Zanzibar harbour", "top_k": 1}).json()["passages"]
    assert hits[0]["document_id"] == doc["id"]
    assert client.delete(f"/documents/{doc['id']}").status_code == 204
    assert client.get(f"/documents/{doc['id']}").status_code == 404
    assert client.delete(f"/documents/{doc['id']}").status_code == 404  # the shard's own error, through Serve


def test_killing_a_node_degrades_and_then_recovers(served, ray_cluster, squad):
    from cluster.localcluster import add_worker

    client, *_ = served
    question = squad[1][0]
    before = client.post("/search", json={"query": question, "top_k": 5}).json()["passages"]
    ray_cluster.remove_node(ray_cluster.workers[0])
    r = _wait_for(lambda: (r := client.post("/search", json={"query": question, "top_k": 5})).status_code == 503
                  and r, 60, "a 503 while the worker node is gone")
    assert "shard(s) [1]" in r.json()["detail"]
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert [s["status"] for s in ready.json()["shards"]] == ["up", "down"]
    ray_cluster.workers[0] = add_worker(ray_cluster, 1)
    _wait_for(lambda: client.get("/readyz").status_code == 200, 180, "the shard to come back with its node")
    after = client.post("/search", json={"query": question, "top_k": 5}).json()["passages"]
    assert [p["chunk_id"] for p in after] == [p["chunk_id"] for p in before]
