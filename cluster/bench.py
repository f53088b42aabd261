"""Scale benchmark on a local multi-node cluster (loopback): ingest throughput on 1 and 2 nodes,
query latency over HTTP with 1 and 2 shards, and the single-machine app for reference.

    python -m cluster.bench --squad ../shared/data/squad-v1.1-dev.json.gz --paragraphs 300 --out bench.json

Each node gets one CPU, so "2 nodes" has twice the CPUs of "1 node", as adding a machine would.
On a shared machine the numbers are noisy: compare within one run.
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import httpx


def _latencies(client: httpx.Client, path: str, key: str, questions: list[str]) -> dict:
    for q in questions[:3]:  # warm: first calls load caches on every side
        client.post(path, json={key: q})
    ms = []
    for q in questions:
        t = time.perf_counter()
        r = client.post(path, json={key: q})
        ms.append((time.perf_counter() - t) * 1000)
        r.raise_for_status()
    ms.sort()
    return {"p50_ms": round(statistics.median(ms), 1), "p95_ms": round(ms[int(0.95 * (len(ms) - 1))], 1)}


def _serve_and_measure(app, questions: list[str]) -> dict:
    import uvicorn  # noqa: F401 - the app server of the test helpers is plain uvicorn too

    from server.serving import uvicorn_config

    import socket
    import threading

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn_config(app, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    try:
        with httpx.Client(base_url=base, timeout=120) as client:
            deadline = time.monotonic() + 600
            while True:
                try:
                    if client.get("/readyz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("the app never became ready")
                time.sleep(0.5)
            # Different questions for each: a question's vector is cached once embedded.
            return {"search": _latencies(client, "/search", "query", questions[0::2]),
                    "ask": _latencies(client, "/ask", "question", questions[1::2])}
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


def run_cluster(nodes: int, docs, questions: list[str], base_settings) -> dict:
    from rag.config import Settings

    from . import serving
    from .app import create_cluster_app
    from .ingestion import ingest_documents
    from .localcluster import local_cluster

    with tempfile.TemporaryDirectory(prefix="rag-bench-") as tmp, local_cluster(nodes=nodes, cpus=1):
        settings = Settings(**{**base_settings.model_dump(), "data_dir": Path(tmp)})
        t = time.perf_counter()
        report = ingest_documents(settings, docs, nodes)
        wall = time.perf_counter() - t
        plan = serving.deploy(Settings(**{**settings.model_dump(), "cluster_shard_cpus": 0.25}))
        pipeline = serving.pipeline(settings, plan)
        pipeline.load()
        latency = _serve_and_measure(create_cluster_app(pipeline, replicas=lambda: serving.replicas(plan)),
                                     questions)
        pipeline.close()
    return {"nodes": nodes, "shards": nodes, "texts": report.texts, "embed_s": round(report.embed_seconds, 1),
            "texts_per_s": round(report.texts / report.embed_seconds, 1), "build_s": round(report.build_seconds, 1),
            "ingest_wall_s": round(wall, 1), "by_node": report.embedded_by_node, **latency}


def run_single(docs, questions: list[str], base_settings) -> dict:
    from rag.config import Settings
    from rag.pipeline import Pipeline
    from server.app import create_app

    with tempfile.TemporaryDirectory(prefix="rag-bench-") as tmp:
        settings = Settings(**{**base_settings.model_dump(), "data_dir": Path(tmp)})
        with Pipeline(settings) as pipeline:
            t = time.perf_counter()
            report = pipeline.ingest_documents(list(docs))
            wall = time.perf_counter() - t
            latency = _serve_and_measure(create_app(pipeline), questions)
    return {"nodes": "1 process", "shards": "unsharded", "ingest_wall_s": round(wall, 1),
            "chunks": report.chunks, **latency}


def main(argv: list[str] | None = None) -> int:
    from eval.datasets import load_squad
    from rag.config import Settings

    parser = argparse.ArgumentParser(prog="python -m cluster.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--squad", type=Path, required=True)
    parser.add_argument("--paragraphs", type=int, default=300)
    parser.add_argument("--questions", type=int, default=60)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    data = load_squad(args.squad)
    docs = data.corpus[:args.paragraphs]
    ids = {d.id for d in docs}
    questions = [i.question for i in data.items if set(i.gold_documents) & ids][:args.questions]
    base = Settings(rate_limit=0, cluster_embed_cpus=1.0, cluster_timeout_s=30, log_json=False)
    rows = [run_single(docs, questions, base), run_cluster(1, docs, questions, base),
            run_cluster(2, docs, questions, base)]
    text = json.dumps({"paragraphs": len(docs), "questions": len(questions), "rows": rows}, indent=2)
    if args.out:
        args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
