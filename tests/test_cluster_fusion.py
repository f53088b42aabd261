"""Sharded retrieval equals the unsharded index's (fast tier: in-process shards, stand-in embedder).

The Ray cluster tests (test_cluster.py) run the same coordinator over real Serve deployments; here
the shards are plain objects, so the fusion itself is checked on every run."""
from __future__ import annotations

import numpy as np
import pytest

from cluster.coordinator import ClusterPipeline, ShardSet, ShardsUnavailableError
from cluster.lexical import LexStats, ShardLexicon
from cluster.shard import LocalClient, Shard, shard_of
from eval.datasets import load_squad
from rag.config import Settings
from rag.documents import Document
from rag.pipeline import Pipeline

from fakes import HashEmbedder
from support import SEEDS, SQUAD

SHARDS = 2


@pytest.fixture(scope="module")
def squad():
    data = load_squad(SQUAD, limit_articles=3)
    return data.corpus[:150], [i.question for i in data.items[:24]]


@pytest.fixture(scope="module")
def indexes(squad, tmp_path_factory):
    docs, _ = squad
    embedder = HashEmbedder()
    # Small chunks: documents of several chunks that share a sentence (the overlap), as in real corpora.
    base = dict(seed_dir=SEEDS, embed_model="hash-embedder", rate_limit=0, chunk_size=300)
    single = Pipeline(Settings(data_dir=tmp_path_factory.mktemp("single"), **base), embedder=embedder)
    single.ingest_documents(docs)
    single.load(build_from_seeds=False)
    settings = Settings(data_dir=tmp_path_factory.mktemp("sharded"), **base)
    shards = [Shard(settings, i, SHARDS, embedder=embedder) for i in range(SHARDS)]
    for i, shard in enumerate(shards):
        shard.pipeline.ingest_documents([d for d in docs if shard_of(d.id, SHARDS) == i])
    sharded = ClusterPipeline(settings, ShardSet([LocalClient(s) for s in shards]), embedder=embedder)
    sharded.load()
    yield single, sharded, shards
    single.close()


def _same(a, b) -> None:
    assert [p.chunk_id for p in a] == [p.chunk_id for p in b]
    assert [p.text for p in a] == [p.text for p in b]
    np.testing.assert_allclose([p.score for p in a], [p.score for p in b], rtol=1e-4, atol=1e-5)


def test_both_shards_hold_documents(indexes, squad):
    _, sharded, shards = indexes
    sizes = [s.pipeline.index.document_count for s in shards]
    assert min(sizes) > 0 and sum(sizes) == len(squad[0])
    assert sharded.index.document_count == len(squad[0])


def test_global_statistics_add_up_to_the_unsharded_ones(indexes):
    single, _, shards = indexes
    terms = {"museum", "london", "victoria", "albert"}
    total = sum(ShardLexicon(s.pipeline.index).stats(terms) for s in shards)
    whole = ShardLexicon(single.index).stats(terms)
    assert total == whole
    assert isinstance(total, LexStats) and total.chunks == single.index.chunk_count


def test_bm25_under_global_statistics_equals_the_index_own(indexes):
    """The shard's scoring reproduces bm25s's own scores for the whole index."""
    single, _, _ = indexes
    lex = ShardLexicon(single.index)
    for query in ("Victoria and Albert Museum collection", "when was the museum founded"):
        tokens = __import__("rag.lexical", fromlist=["tokenize"]).tokenize([query])[0]
        np.testing.assert_allclose(lex.scores(tokens, lex.stats(tokens)), single.index.bm25.scores(query),
                                   rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("mode", ["hybrid", "dense", "lexical"])
@pytest.mark.parametrize("fusion", ["weighted", "calibrated", "rrf"])
def test_sharded_search_equals_unsharded(indexes, squad, mode, fusion):
    single, sharded, _ = indexes
    one = single.with_settings(fusion=fusion)
    many = ClusterPipeline(Settings(**{**sharded.settings.model_dump(), "fusion": fusion}), sharded.shards,
                           embedder=sharded.embedder)
    many.load()
    overlap = []
    for question in squad[1]:
        a, b = one.search(question, 5, mode=mode), many.search(question, 5, mode=mode)
        if fusion == "rrf" and mode == "hybrid":
            # Ranks, not scores: chunks with exactly equal BM25 scores (common at short lengths) are
            # ranked by their row, which no sharded index shares with the unsharded one, and RRF turns
            # that order into different fused scores further down.
            assert a[0].chunk_id == b[0].chunk_id
            overlap.append(len({p.chunk_id for p in a} & {p.chunk_id for p in b}) / len(a))
        else:
            _same(a, b)
    assert not overlap or np.mean(overlap) >= 0.9


def test_sharded_answers_equal_unsharded(indexes, squad):
    single, sharded, _ = indexes
    for question in squad[1][:15]:
        a, b = single.ask(question), sharded.ask(question)
        assert (a.answer, a.abstained) == (b.answer, b.abstained)
        assert [(c.document_id, c.start, c.end, c.text) for c in a.citations] == \
               [(c.document_id, c.start, c.end, c.text) for c in b.citations]


def test_filters_apply_on_every_shard(indexes, squad):
    single, sharded, _ = indexes
    doc_ids = [d.id for d in squad[0][::7]]
    for question in squad[1][:10]:
        _same(single.search(question, 5, filters={"document_id": doc_ids}),
              sharded.search(question, 5, filters={"document_id": doc_ids}))


def test_writes_route_to_the_owning_shard(indexes):
    _, sharded, shards = indexes
    doc = Document("cluster-write-1", "api/cluster-write-1", "Zanzibar note",
                   "The quokka orchestra of Zanzibar plays every Tuesday in the harbour.")
    assert sharded.put_documents([doc]) == ["added"]
    owner = shard_of(doc.id, SHARDS)
    assert shards[owner].pipeline.index.document(doc.id) is not None
    assert shards[1 - owner].pipeline.index.document(doc.id) is None
    assert sharded.search("quokka orchestra Zanzibar", 1)[0].document_id == doc.id
    sharded.delete_document(doc.id)
    assert sharded.index.document(doc.id) is None


class _Down:
    def start(self, method, *args):
        raise ConnectionError("node lost")


def test_a_missing_shard_is_never_silent(indexes, squad):
    _, sharded, shards = indexes
    broken = ShardSet([LocalClient(shards[0]), _Down()])
    strict = ClusterPipeline(sharded.settings, broken, embedder=sharded.embedder)
    with pytest.raises(ShardsUnavailableError, match=r"shard\(s\) \[1\]"):
        strict.service.search(squad[1][0], 5)
    from cluster.coordinator import ANSWERED, Answered

    broken.allow_partial = True
    answered = Answered()
    token = ANSWERED.set(answered)
    try:
        passages = strict.service.search(squad[1][0], 5)
    finally:
        ANSWERED.reset(token)
    assert passages and all(shard_of(p.document_id, SHARDS) == 0 for p in passages)
    assert answered.missing == {1} and answered.shards == 2


def test_cluster_ingest_refuses_single_machine_options(tmp_path, capsys):
    from ragcli.main import main

    assert main(["--data-dir", str(tmp_path), "ingest", "--cluster", "127.0.0.2:6379", "--rebuild"]) == 2
    assert "single-machine options" in capsys.readouterr().err


def test_the_app_flags_partial_answers_and_reports_shards(indexes, squad):
    from fastapi.testclient import TestClient

    from cluster.app import create_cluster_app

    _, sharded, shards = indexes
    settings = Settings(**{**sharded.settings.model_dump(), "cluster_allow_partial": True})
    pipeline = ClusterPipeline(settings, ShardSet([LocalClient(shards[0]), _Down()], allow_partial=True),
                               embedder=sharded.embedder)
    pipeline._loaded = True  # as after a start with both shards up; shard 1 has gone since
    replicas = {0: {"node": "127.0.0.2", "replicas": {"RUNNING": 1}}, 1: {"node": "127.0.0.3", "replicas": {}}}
    with TestClient(create_cluster_app(pipeline, replicas=lambda: replicas, load_in_background=False),
                    base_url="http://127.0.0.1") as client:
        r = client.post("/search", json={"query": squad[1][0], "top_k": 3})
        assert r.status_code == 200 and r.json()["passages"]
        assert (r.headers["x-rag-shards-answered"], r.headers["x-rag-shards-missing"]) == ("0", "1")
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert [(s["shard"], s["status"], s["node"]) for s in ready.json()["shards"]] == \
               [(0, "up", "127.0.0.2"), (1, "down", "127.0.0.3")]
        assert "node lost" in ready.json()["shards"][1]["reason"]
        metrics = client.get("/metrics").text
        assert 'rag_cluster_shard_up{shard="1"} 0.0' in metrics and 'rag_cluster_shard_up{shard="0"} 1.0' in metrics
        pipeline.shards.allow_partial = False
        r = client.post("/search", json={"query": squad[1][0], "top_k": 3})
        assert r.status_code == 503 and "shard(s) [1]" in r.json()["detail"]
