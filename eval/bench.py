"""`rag bench`: how fast the service ingests, answers in-process, and serves over real HTTP.

One run, bounded in count and time, measures:

1. Ingestion: `Pipeline.ingest_documents` into a fresh data dir (chunks/s and texts/s: the index
   embeds every chunk and every sentence), and bare `embedder.encode` on exactly the texts the index
   embedded (read back from the built index), with the same embedder and batching; their ratio is
   the ingest overhead (chunking, BM25, checksummed snapshot writes).
2. The floor, in-process: one query embedding (`encode_query`) plus hybrid search
   (`Pipeline.search`), and the whole in-process `Pipeline.ask`, on fresh questions.
3. Real HTTP on loopback: `rag serve` as a subprocess (rate limit off, a high in-flight limit)
   timed from process start to /healthz and to /readyz 200, then /ask and /search at 1, 8 and 32
   concurrent clients (one httpx client per thread, keep-alive): p50/p95/p99, requests/s, errors.
4. The server's peak RSS (VmHWM) and the index's size on disk.

Every question is used once in the whole run, so the query-embedding cache (in-process and in the
server) never answers one: the numbers include embedding every question.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .bench_questions import QuestionStream, seed_questions, squad_questions
from .measure import (ENDPOINTS, REPO, BenchError, ServerProcess, dir_bytes, load_phase, machine_info, summary_ms, timed,
                      versions, write_results)

SHARED_DATA = REPO.parent / "shared" / "data"
DEFAULT_SQUAD = SHARED_DATA / "squad-v1.1-dev.json.gz"

@dataclass
class BenchOptions:
    corpus: str = "seeds"  # "seeds" or "squad"
    squad: Path = DEFAULT_SQUAD
    limit_docs: int = 300
    requests: int = 200  # per HTTP phase, and for each in-process measurement
    clients: tuple[int, ...] = (1, 8, 32)
    phase_timeout_s: float = 60.0  # cap per HTTP phase
    startup_timeout_s: float = 180.0
    top_k: int = 5
    out: Path | None = None


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--corpus", choices=("seeds", "squad"), default="seeds",
                   help="seeds: the seed article(s) and generated questions; squad: SQuAD dev paragraphs and questions")
    p.add_argument("--squad", type=Path, default=DEFAULT_SQUAD, help="SQuAD JSON (.gz fine), read in place")
    p.add_argument("--limit-docs", type=int, default=300, help="SQuAD: first N paragraphs (default 300)")
    p.add_argument("--requests", type=int, default=200,
                   help="requests per HTTP phase and queries per in-process measurement (default 200)")
    p.add_argument("--clients", default="1,8,32", help="concurrent clients per HTTP phase (default 1,8,32)")
    p.add_argument("--phase-timeout", type=float, default=60.0, help="seconds at most per HTTP phase (default 60)")
    p.add_argument("--out", type=Path, help="write bench.json and bench.md here")


def run(args: argparse.Namespace, settings) -> int:
    try:
        clients = tuple(int(c) for c in str(args.clients).split(",") if c.strip())
    except ValueError:
        print(f"error: --clients must be comma-separated integers, got {args.clients!r}", file=sys.stderr)
        return 2
    if not clients or min(clients) < 1 or args.requests < 1 or args.limit_docs < 1:
        print("error: --requests, --limit-docs and every --clients value must be at least 1", file=sys.stderr)
        return 2
    opts = BenchOptions(corpus=args.corpus, squad=args.squad, limit_docs=args.limit_docs, requests=args.requests,
                        clients=clients, phase_timeout_s=args.phase_timeout, out=args.out)
    try:
        result = run_benchmark(opts, settings)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(result["markdown"])
    if opts.out:
        print(f"results written to {opts.out / 'bench.json'}", file=sys.stderr)
    return 0


# -- small measurement helpers --------------------------------------------------------------
def bench_ingest(pipeline, documents: list) -> dict:
    from rag.embedding import batch_threads

    embedder = pipeline.embedder
    # Warm-up, untimed: load the bulk ONNX session and let it allocate for the largest batch shape
    # (one full batch of max-length texts). Without this, whichever of ingest / bare encode runs first
    # pays a first-pass penalty (about 1.5 s per 60 paragraphs here) and the ratio measures that.
    started = time.perf_counter()
    embedder.encode(["lorem ipsum dolor sit amet " * 100] * getattr(embedder, "batch_size", 64))
    warmup_s = time.perf_counter() - started
    started = time.perf_counter()
    report = pipeline.ingest_documents(documents, replace_all=True)
    ingest_s = time.perf_counter() - started
    index = pipeline.index
    # Exactly what build_index embedded, in its order and batches: chunk texts, then sentence texts.
    chunk_texts = [c.text for c in index.chunks]
    sentence_texts = [index.documents[row].text[a:b] for row, a, b in index.sentences[:].tolist()]
    batch = 1024  # as build_index
    parts = []
    with batch_threads():  # as ingest (matters for the torch backend)
        for texts in (chunk_texts, sentence_texts):
            started = time.perf_counter()
            for k in range(0, len(texts), batch):
                embedder.encode(texts[k:k + batch])
            parts.append(time.perf_counter() - started)
    bare_s = max(sum(parts), 1e-9)
    n_texts = len(chunk_texts) + len(sentence_texts)
    return {"documents": report.documents, "chunks": len(chunk_texts), "sentences": len(sentence_texts),
            "texts": n_texts, "ingest_s": round(ingest_s, 3),
            "ingest_chunks_per_s": round(len(chunk_texts) / ingest_s, 1),
            "ingest_texts_per_s": round(n_texts / ingest_s, 1),
            "bare_encode_s": round(bare_s, 3), "bare_texts_per_s": round(n_texts / bare_s, 1),
            "bare_encode_chunks_s": round(parts[0], 3), "bare_encode_sentences_s": round(parts[1], 3),
            "ingest_time_over_bare_encode": round(ingest_s / bare_s, 2), "encoder_warmup_s": round(warmup_s, 3)}


# -- 2. the in-process floor ---------------------------------------------------------------------
def bare_session(model_dir: str, threads: int):
    """What a user could write instead of this service: sentence-transformers on the same exported
    ONNX fp32 model, one session with `threads` intra-op threads, nothing of ours around it."""
    import onnxruntime as ort
    from sentence_transformers import SentenceTransformer

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    return SentenceTransformer(model_dir, backend="onnx", device="cpu", local_files_only=True,
                               model_kwargs={"provider": "CPUExecutionProvider", "session_options": options})


def bench_floor(pipeline, questions: QuestionStream, n: int, top_k: int) -> dict:
    """The floor: one query embedding plus an exact flat inner-product FAISS search over the same
    chunk vectors, with the bare model (`bare_session`) at each thread count from 1 to the CPUs this
    process may use; the best p50 is the floor. Every question is new. Alternating with it,
    `Pipeline.ask` on another fresh question (so that both see the same background load)."""
    import faiss
    import numpy as np

    from rag.config import available_cpus

    flat = faiss.IndexFlatIP(pipeline.index.config.dimension)
    flat.add(np.ascontiguousarray(pipeline.index.vectors.reconstruct_batch(np.arange(pipeline.index.rows)),
                                  dtype=np.float32))
    for q in questions.take(3):  # warm-up: first-call costs of the service's query session
        pipeline.ask(q, top_k)
    by_threads, ask = {}, []
    for threads in range(1, available_cpus() + 1):
        model = bare_session(pipeline.embedder.model_dir, threads)
        for q in questions.take(3):
            model.encode([q], normalize_embeddings=True)
        embed, total = [], []
        for _ in range(n):
            q = questions.next()
            started = time.perf_counter()
            vector = model.encode([q], normalize_embeddings=True, convert_to_numpy=True)
            e = time.perf_counter() - started
            flat.search(np.asarray(vector, dtype=np.float32), top_k)
            embed.append(e)
            total.append(time.perf_counter() - started)
            q = questions.next()
            ask.append(timed(lambda: pipeline.ask(q, top_k)))
        by_threads[threads] = {"embed_ms": summary_ms(embed), "embed_plus_search_ms": summary_ms(total)}
    best = min(by_threads, key=lambda t: by_threads[t]["embed_plus_search_ms"]["p50"])
    return {"queries": n, "threads": best, **by_threads[best],
            "by_threads": {str(t): v["embed_plus_search_ms"]["p50"] for t, v in by_threads.items()},
            "ask_in_process_ms": summary_ms(ask)}


# -- 3. the server over HTTP ---------------------------------------------------------------------

def bench_http(settings, data_dir: Path, questions: QuestionStream, opts: BenchOptions,
               say: Callable[[str], None]) -> tuple[dict, list[dict]]:
    import httpx

    server = ServerProcess(settings, data_dir, data_dir.parent / "server.log", opts.startup_timeout_s)
    try:
        server.start()
        say(f"server ready in {server.readyz_s:.2f} s (/healthz after {server.healthz_s:.2f} s)")
        with httpx.Client(base_url=server.base_url, timeout=60.0) as client:
            first_ask = timed(lambda: client.post("/ask", json={"question": questions.next()}).raise_for_status())
            for q in questions.take(4):  # warm-up, each endpoint
                client.post("/ask", json={"question": q}).raise_for_status()
                client.post("/search", json={"query": questions.next()}).raise_for_status()
        phases = []
        for endpoint in ENDPOINTS:
            for clients in opts.clients:
                phase = load_phase(server.base_url, endpoint, questions.take(opts.requests), clients,
                                   opts.phase_timeout_s, opts.top_k)
                lat = phase["latency_ms"]
                say(f"{endpoint} x{clients}: {phase['ok']} ok, {phase['errors']} errors, "
                    f"{phase['requests_per_s']} req/s, p50 {lat['p50']} ms, p95 {lat['p95']} ms")
                phases.append(phase)
        peak = server.peak_rss_kib()
        server_info = {"cold_start_healthz_s": round(server.healthz_s, 3), "cold_start_readyz_s": round(server.readyz_s, 3),
                       "first_ask_ms": round(first_ask * 1000, 2),
                       "rss_at_ready_mib": round(server.rss_ready_kib / 1024, 1) if server.rss_ready_kib else None,
                       "peak_rss_mib": round(peak / 1024, 1) if peak else None,
                       "env": {k: server.env[k] for k in ("RAG_RATE_LIMIT", "RAG_MAX_INFLIGHT")}}
    finally:
        server.stop()
    return server_info, phases


# -- the whole run --------------------------------------------------------------------------
def load_corpus(opts: BenchOptions, settings) -> tuple[list, list[str], dict]:
    if opts.corpus == "squad":
        from .datasets import DatasetError, load_dataset

        try:
            dataset = load_dataset(opts.squad)
        except DatasetError as exc:
            raise BenchError(str(exc)) from exc
        documents = dataset.corpus[: opts.limit_docs]
        questions = squad_questions(dataset.items, {d.id for d in documents})
        return documents, questions, {"name": "squad", "source": str(opts.squad), "limit_docs": opts.limit_docs}
    from rag.documents import load_paths

    documents = load_paths([settings.seed_dir]).documents
    if not documents:
        raise BenchError(f"no documents in {settings.seed_dir}")
    return documents, seed_questions(documents), {"name": "seeds", "source": str(settings.seed_dir)}


def run_benchmark(opts: BenchOptions, settings=None, *, embedder=None,
                  say: Callable[[str], None] | None = None) -> dict:
    """Run every measurement; returns the results (also written to `opts.out` when set).

    The index goes into a fresh temporary data dir. The exported ONNX model is cached in
    `settings.data_dir/models` (or `embedder.cache_dir`) and shared with the served data dir, so the
    server's cold start is that of an installed service, not a first-ever model export."""
    from rag.config import Settings
    from rag.embedding import SentenceTransformerEmbedder
    from rag.pipeline import Pipeline

    settings = settings or Settings()
    say = say or (lambda msg: print(f"[bench] {msg}", file=sys.stderr, flush=True))
    if opts.requests < 1 or not opts.clients or min(opts.clients) < 1:
        raise BenchError("requests and every client count must be at least 1")
    documents, pool, corpus_info = load_corpus(opts, settings)
    questions = QuestionStream(pool)
    started = time.perf_counter()
    result: dict = {"benchmark": "rag bench", "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "machine": machine_info(), "versions": versions()}
    with tempfile.TemporaryDirectory(prefix="rag-bench-") as tmp:
        data_dir = Path(tmp) / "data"
        data_dir.mkdir()
        models = Path(embedder.cache_dir) if embedder is not None and embedder.cache_dir else settings.data_dir / "models"
        models.mkdir(parents=True, exist_ok=True)
        (data_dir / "models").symlink_to(models.resolve(), target_is_directory=True)
        run_settings = settings.model_copy(update={"data_dir": data_dir})
        t0 = time.perf_counter()
        if embedder is None:
            embedder = SentenceTransformerEmbedder(run_settings.embed_model, backend=run_settings.embed_backend,
                                                   batch_size=run_settings.embed_batch_size,
                                                   threads=run_settings.embed_threads, cache_dir=models)
        model_load_s = time.perf_counter() - t0
        pipeline = Pipeline(run_settings, embedder=embedder)
        result["backend"] = {"embed_backend": run_settings.embed_backend, "embed_model": run_settings.embed_model,
                             "embed_threads": run_settings.embed_threads, "precision": embedder.precision,
                             "retrieval_mode": run_settings.retrieval_mode.value, "fusion": run_settings.fusion.value,
                             "generator": run_settings.generator, "top_k": opts.top_k,
                             "model_load_s": round(model_load_s, 3)}

        say(f"ingesting {len(documents)} documents ({corpus_info['name']})")
        result["ingest"] = bench_ingest(pipeline, documents)
        corpus_info.update(documents=result["ingest"]["documents"], chunks=result["ingest"]["chunks"],
                           sentences=result["ingest"]["sentences"])
        result["corpus"] = corpus_info
        result["index_bytes"] = dir_bytes(run_settings.index_dir)
        say(f"ingest: {result['ingest']['ingest_s']} s; bare encode {result['ingest']['bare_encode_s']} s")

        say(f"in-process floor over {opts.requests} fresh questions")
        result["floor"] = bench_floor(pipeline, questions, opts.requests, opts.top_k)
        result["server"], result["http"] = bench_http(settings, data_dir, questions, opts, say)
        result["server"]["index_bytes"] = result["index_bytes"]
    result["questions_used"] = questions.used
    result["wall_s"] = round(time.perf_counter() - started, 1)
    result["ratios"] = ratios(result)
    result["markdown"] = markdown(result)
    write_results(result, opts.out, "bench")
    return result


def _phase(result: dict, endpoint: str, clients: int) -> dict | None:
    return next((p for p in result["http"] if p["endpoint"] == endpoint and p["clients"] == clients), None)


def ratios(result: dict) -> dict:
    def div(a, b):
        return round(a / b, 2) if a is not None and b else None

    floor_p50 = result["floor"]["embed_plus_search_ms"]["p50"]
    out = {"ingest_time_over_bare_encode": result["ingest"]["ingest_time_over_bare_encode"]}
    ask1 = _phase(result, "/ask", 1)
    out["ask_p50_1_client_over_floor_p50"] = div(ask1["latency_ms"]["p50"], floor_p50) if ask1 else None
    for endpoint in ENDPOINTS:
        one, eight = _phase(result, endpoint, 1), _phase(result, endpoint, 8)
        name = endpoint.strip("/")
        out[f"{name}_rps_8_over_1"] = div(eight["requests_per_s"], one["requests_per_s"]) if one and eight else None
    return out


def markdown(r: dict) -> str:
    ing, fl, srv, m, b = r["ingest"], r["floor"], r["server"], r["machine"], r["backend"]
    c = r["corpus"]
    rt = r["ratios"]

    def p(d: dict) -> str:
        return "–" if d["p50"] is None else f"{d['p50']:.1f} / {d['p95']:.1f}"

    lines = [
        f"Corpus: {c['name']} ({c['documents']} documents, {c['chunks']} chunks, {c['sentences']} sentences); "
        f"{m['nproc']} × {m['cpu_model']}; embedding backend {b['embed_backend']} ({b['precision']}), "
        f"{b['retrieval_mode']} retrieval, {b['generator']} generator.",
        "",
        "| measurement | value |",
        "|---|---|",
        f"| ingest (`Pipeline.ingest_documents`, fresh dir) | {ing['ingest_s']:.2f} s: {ing['ingest_chunks_per_s']:.0f} chunks/s, "
        f"{ing['ingest_texts_per_s']:.0f} texts/s ({ing['texts']} texts = chunks + sentences) |",
        f"| bare `encode` of the same texts | {ing['bare_encode_s']:.2f} s: {ing['bare_texts_per_s']:.0f} texts/s; "
        f"ingest takes {rt['ingest_time_over_bare_encode']}× as long |",
        f"| floor: bare model, embed query ({fl['threads']} threads, the best), p50 / p95 | {p(fl['embed_ms'])} ms |",
        f"| floor: embed + flat search, p50 / p95 (p50 by threads: {fl['by_threads']}) | "
        f"{p(fl['embed_plus_search_ms'])} ms |",
        f"| in-process `Pipeline.ask`, p50 / p95 | {p(fl['ask_in_process_ms'])} ms |",
        f"| server cold start: process start → /healthz, → /readyz 200 | {srv['cold_start_healthz_s']:.2f} s, "
        f"{srv['cold_start_readyz_s']:.2f} s |",
        f"| first /ask after ready | {srv['first_ask_ms']:.0f} ms |",
        f"| server RSS at ready / peak (VmHWM) | {srv['rss_at_ready_mib']} / {srv['peak_rss_mib']} MiB |",
        f"| index on disk | {r['index_bytes'] / 2**20:.2f} MiB |",
        f"| /ask p50 at 1 client ÷ floor p50 | {rt['ask_p50_1_client_over_floor_p50']} |",
        f"| req/s at 8 clients ÷ at 1 client | /ask {rt['ask_rps_8_over_1']}, /search {rt['search_rps_8_over_1']} |",
        "",
        "| endpoint | clients | ok | errors | req/s | p50 ms | p95 ms | p99 ms |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for ph in r["http"]:
        lat = ph["latency_ms"]

        def f(v):
            return "–" if v is None else f"{v:.1f}"

        capped = " (time cap)" if ph["capped_by_time"] else ""
        lines.append(f"| {ph['endpoint']} | {ph['clients']} | {ph['ok']}{capped} | {ph['errors']} | "
                     f"{ph['requests_per_s']:.1f} | {f(lat['p50'])} | {f(lat['p95'])} | {f(lat['p99'])} |")
    return "\n".join(lines)
