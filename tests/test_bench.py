"""The speed benchmark end to end on the seed corpus, with tiny counts: every field is there and sane.
No timing thresholds: speed targets live in the benchmark's numbers, not in tests."""
from __future__ import annotations

import pytest

import json

from eval.bench import ENDPOINTS
from eval.bench_questions import seed_questions
from ragcli.main import main
from rag.documents import load_paths

from support import SEEDS

pytestmark = pytest.mark.integration  # the `rag` command in subprocesses, with the real model

REQUESTS = 20
CLIENTS = (1, 8, 32)


def test_seed_questions_are_distinct_and_plenty():
    docs = load_paths([SEEDS]).documents
    questions = seed_questions(docs)
    assert len(questions) == len(set(questions)) >= 1000
    assert "what did Peskov say" in questions  # the dev questions come first, then generated ones
    assert any("Peskov" in q for q in questions[10:])


def test_bench_on_seeds_reports_every_measurement(tmp_path, embedder, capsys):
    # Reuse the session's exported ONNX model (the benchmark caches it in DATA_DIR/models).
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "models").symlink_to(embedder.cache_dir, target_is_directory=True)
    out = tmp_path / "out"

    code = main(["--data-dir", str(data_dir), "bench", "--corpus", "seeds", "--requests", str(REQUESTS),
                 "--clients", ",".join(map(str, CLIENTS)), "--phase-timeout", "300", "--out", str(out)])

    assert code == 0
    printed = capsys.readouterr().out
    assert "| endpoint | clients |" in printed and "/readyz" in printed
    assert (out / "bench.md").read_text().strip() == printed.strip()
    r = json.loads((out / "bench.json").read_text())

    m = r["machine"]
    assert m["nproc"] >= 1 and m["cpu_model"] and m["python"]
    assert {"onnxruntime", "faiss-cpu", "sentence-transformers", "fastapi", "uvicorn", "httpx"} <= set(r["versions"])
    assert r["backend"]["embed_backend"] in ("onnx", "onnx-int8", "torch")
    assert r["backend"]["retrieval_mode"] == "hybrid"

    ing = r["ingest"]
    assert r["corpus"]["name"] == "seeds" and ing["documents"] == r["corpus"]["documents"] == 1
    assert 0 < ing["chunks"] < ing["texts"] == ing["chunks"] + ing["sentences"]
    for key in ("ingest_s", "ingest_chunks_per_s", "ingest_texts_per_s", "bare_encode_s", "bare_texts_per_s",
                "ingest_time_over_bare_encode"):
        assert ing[key] > 0, key
    assert r["index_bytes"] > 0 and r["server"]["index_bytes"] == r["index_bytes"]

    fl = r["floor"]
    assert fl["queries"] == REQUESTS
    # The floor is the bare model at its best thread count, every count from 1 to the CPUs allowed tried.
    assert str(fl["threads"]) in fl["by_threads"] and fl["by_threads"][str(fl["threads"])] == min(fl["by_threads"].values())
    assert len(fl["by_threads"]) == m["nproc"]
    for key in ("embed_ms", "embed_plus_search_ms"):
        s = fl[key]
        assert s["n"] == REQUESTS and 0 < s["p50"] <= s["p95"] <= s["p99"], key
    s = fl["ask_in_process_ms"]
    assert s["n"] == REQUESTS * len(fl["by_threads"]) and 0 < s["p50"] <= s["p95"] <= s["p99"]

    srv = r["server"]
    assert 0 < srv["cold_start_healthz_s"] <= srv["cold_start_readyz_s"]
    assert srv["first_ask_ms"] > 0
    assert 0 < srv["rss_at_ready_mib"] <= srv["peak_rss_mib"]

    phases = {(p["endpoint"], p["clients"]): p for p in r["http"]}
    assert set(phases) == {(e, c) for e in ENDPOINTS for c in CLIENTS}
    for p in phases.values():
        assert p["ok"] == p["sent"] == REQUESTS and p["errors"] == 0 and not p["capped_by_time"], p
        assert p["requests_per_s"] > 0 and p["wall_s"] > 0
        lat = p["latency_ms"]
        assert lat["n"] == REQUESTS and 0 < lat["p50"] <= lat["p95"] <= lat["p99"]
    assert phases[("/ask", 1)]["server_reported_total_ms"]["p50"] > 0

    # Every question was used once: floor (warm-up 3, then per thread count 3 + 2 x N), server (1 + 2 x 4
    # warm-up), 6 phases of N.
    assert r["questions_used"] == (3 + m["nproc"] * (3 + 2 * REQUESTS) + 9
                                   + len(ENDPOINTS) * len(CLIENTS) * REQUESTS)

    rt = r["ratios"]
    for key in ("ingest_time_over_bare_encode", "ask_p50_1_client_over_floor_p50", "ask_rps_8_over_1",
                "search_rps_8_over_1"):
        assert rt[key] > 0, key
