"""`rag bench-scale` end to end at a tiny size (a 30-paragraph SQuAD pool, ~1,200 chunks, IVF forced):
every measurement is there and consistent. No timing thresholds: those are the benchmark's numbers."""
from __future__ import annotations

import pytest

import gzip
import json

import numpy as np

from eval.scale_corpus import PoolEmbedder, load_pool, synthetic_corpus
from ragcli.main import main

from support import SQUAD

pytestmark = pytest.mark.integration  # the `rag` command in subprocesses, with the real model


def _tiny_squad(path, paragraphs: int = 30):
    data = json.loads(gzip.open(SQUAD).read())
    article = data["data"][0]
    small = {"version": "1.1", "data": [{"title": article["title"], "paragraphs": article["paragraphs"][:paragraphs]}]}
    path.write_text(json.dumps(small))
    return path


def test_pool_embedder_gives_pool_vectors_and_normalised_means(tmp_path, embedder):
    pool = load_pool(_tiny_squad(tmp_path / "squad.json", 5))
    vectors = embedder.encode(pool.sentences)
    stand_in = PoolEmbedder(embedder, pool.sentences, vectors)
    np.testing.assert_array_equal(stand_in.encode(pool.sentences[:3]), vectors[:3])
    two = pool.sentences[0] + " " + pool.sentences[1]
    mean = vectors[0] + vectors[1]
    np.testing.assert_allclose(stand_in.encode([two])[0], mean / np.linalg.norm(mean), atol=1e-6)
    assert stand_in.embedded_for_real == 0
    np.testing.assert_allclose(stand_in.encode(["A sentence from nowhere."])[0],
                               embedder.encode(["A sentence from nowhere."])[0], atol=1e-6)
    assert stand_in.embedded_for_real == 1
    docs = synthetic_corpus(pool, 200, 1000, 1)
    assert docs == synthetic_corpus(pool, 200, 1000, 1), "the corpus is drawn with a fixed seed"


def test_bench_scale_reports_build_memory_latency_and_recall(tmp_path, embedder, monkeypatch, capsys):
    monkeypatch.setenv("RAG_VECTOR_INDEX", "ivf")
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "models").symlink_to(embedder.cache_dir, target_is_directory=True)
    out = tmp_path / "out"
    code = main(["--data-dir", str(data_dir), "bench-scale", "--chunks", "1200", "--squad",
                 str(_tiny_squad(tmp_path / "squad.json")), "--work", str(tmp_path / "work"), "--queries", "10",
                 "--nprobes", "2,32", "--small-chunks", "200", "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert (out / "scale.md").read_text().strip() == printed.strip()
    r = json.loads((out / "scale.json").read_text())

    b = r["build"]
    assert 1000 <= b["chunks"] <= 1400 and b["sentences"] > b["chunks"]
    assert b["segments"] == 1 and [v["type"] for v in b["vector_index"]] == ["ivf-flat"]
    assert b["vector_index"][0]["vectors"] == b["chunks"]
    assert 0 < b["build_without_embedding_s"] < b["build_s"] and b["build_peak_rss_mib"] > 0
    assert r["index_bytes"] > 0 and "chunks.faiss" in r["index_files"]

    s = r["server"]
    assert s["cold_start_readyz_s"] > 0 and 0 < s["rss_at_ready_mib"] <= s["peak_rss_mib"]
    for phase in s["http"]:
        assert phase["ok"] == phase["sent"] == 5 and phase["errors"] == 0

    p = r["in_process"]
    for key in ("query_embedding_ms", "dense_ms", "bm25_ms", "hybrid_search_ms"):
        assert p[key]["n"] == 10 and 0 < p[key]["p50"] <= p[key]["p95"], key
    sweep = {row["nprobe"]: row for row in p["recall_sweep"]}
    assert set(sweep) == {2, 32}
    # 32 of 32 clusters scans every vector (ties in float order aside, exact search)
    assert 0 < sweep[2]["recall_at_10"] <= sweep[32]["recall_at_10"] and sweep[32]["recall_at_10"] >= 0.98
    assert p["dense_recall_at_10"] == sweep[32]["recall_at_10"] and sweep[32]["default"]

    # The write phase, on this index and on a small one: every write acknowledged and then visible.
    small = r["small"]
    assert 100 <= small["chunks"] <= 400
    for w in (s["writes"], small["server"]["writes"]):
        assert w["writes"] == 60 and w["write_ms"]["n"] == w["write_ms_while_querying"]["n"] == 30
        assert w["delete_ms"]["n"] == 30 and w["queries_during_writes_ms"]["n"] > 0
        assert w["not_visible_after_ack"] == 0 and w["errors"] == 0 and w["write_ms"]["p50"] > 0
        assert 0 <= w["waited_for_checksums_s"] < 600
    assert r["embedding_floor_ms"]["n"] == 60 and r["embedding_floor_ms"]["p50"] > 0
    assert "write p50 / embedding p50" in printed and "write p50 large / small" in printed

    # The merge phase: the whole served index merged by the background merge's child beside the
    # queries, staged and never published.
    m = s["merge"]
    assert m["segments_merged"] >= 1 and m["chunks_merged"] > 0 and m["merge_finished"]
    assert m["queries_before_ms"]["n"] >= 200
    assert "before and during a merge of the whole index" in printed
    assert not list((data_dir.parent / "work" / "data" / "index").glob(".staged-*"))
