"""`rag bench-scale`: the index at a million chunks on a laptop CPU.

How the corpus is made (embedding a million real chunks would take this CPU about a day):

- A pool of real text: every sentence of the SQuAD dev contexts (split as the index splits them),
  embedded once with the configured model. Questions are SQuAD dev questions, embedded for real
  with the configured model at query time by the server.
- Synthetic documents drawn with a fixed seed: each is 6-12 paragraphs, each paragraph a run of 2-6
  consecutive pool sentences from a random SQuAD paragraph, under a random SQuAD article title.
  Documents are added until the corpus has about `--chunks` chunks.
- `PoolEmbedder` stands in for the model at ingest only: a sentence gets its pool vector, a chunk
  the normalised mean of its sentences' vectors (a piece not in the pool is embedded for real).
  Everything else is the real write path: chunking, BM25, the FAISS index type chosen by size,
  checksummed snapshots.

Then it measures, in this order:
1. Build: wall time, peak RSS of the building process, the snapshot's size on disk.
2. `rag serve` as a subprocess with default settings: cold start to ready, RSS at ready and at peak
   (VmHWM) after the HTTP phase, /search and /ask latency at 1 client over loopback.
3. In-process (a fresh load): the dense part (FAISS search alone), BM25 alone and whole hybrid search
   (without the query embedding, cached first) per question; dense recall@10 of the served index
   against exact search over the same vectors, for a few nprobe values with their latency; exact
   flat search latency on the same vectors for comparison.
"""
from __future__ import annotations

import argparse
import json
import resource
import shutil
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .bench import DEFAULT_SQUAD
from .scale_corpus import Pool, PoolEmbedder, SyntheticCorpus, load_pool, pool_vectors
from .scale_report import markdown
from .scale_writes import WRITES, embedding_floor_ms, one_paragraph_documents
from .measure import (BenchError, ServerProcess, dir_bytes, load_phase, machine_info, summary_ms, versions,
                      write_results)


@dataclass
class ScaleOptions:
    chunks: int = 1_000_000
    squad: Path = DEFAULT_SQUAD
    work: Path = Path("scale-work")
    queries: int = 200
    nprobes: tuple[int, ...] = (8, 16, 32, 64, 128)
    reuse: bool = False  # measure an index already built in `work` (same --chunks)
    writes: bool = True  # the write phase, on a small index and on this one
    small_chunks: int = 10_000
    out: Path | None = None


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--chunks", type=int, default=1_000_000, help="corpus size in chunks (default 1,000,000)")
    p.add_argument("--squad", type=Path, default=DEFAULT_SQUAD, help="SQuAD JSON (.gz fine): the sentence pool")
    p.add_argument("--work", type=Path, default=Path("scale-work"),
                   help="where the index is built (needs ~8 GB at 1M chunks; default ./scale-work)")
    p.add_argument("--queries", type=int, default=200, help="questions per measurement (default 200)")
    p.add_argument("--nprobes", default="8,16,32,64,128", help="IVF nprobe values for the recall sweep")
    p.add_argument("--reuse", action="store_true", help="measure the index already built in --work")
    p.add_argument("--no-writes", action="store_true", help="skip the write phase (and its small index)")
    p.add_argument("--small-chunks", type=int, default=10_000, help="size of the small index the write phase "
                   "compares with (default 10,000)")
    p.add_argument("--out", type=Path, help="write scale.json and scale.md here")


def run(args: argparse.Namespace, settings=None) -> int:
    opts = ScaleOptions(chunks=args.chunks, squad=args.squad, work=args.work, queries=args.queries,
                        nprobes=tuple(int(x) for x in args.nprobes.split(",") if x.strip()), reuse=args.reuse,
                        out=args.out, writes=not args.no_writes, small_chunks=args.small_chunks)
    try:
        result = run_scale(opts, settings)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(result["markdown"])
    return 0


# -- measurements ---------------------------------------------------------------------------
def build(opts: ScaleOptions, settings, real, pool: Pool, say: Callable[[str], None]) -> dict:
    from rag.pipeline import Pipeline

    corpus = SyntheticCorpus(pool, opts.chunks, settings.chunk_size, settings.chunk_overlap)
    say(f"about {corpus.expected_chars / 1e6:.0f} M characters of synthetic documents, drawn as the build reads them")
    embedder = PoolEmbedder(real, pool.sentences, pool_vectors(real, pool, opts.work / "cache", say))
    pipeline = Pipeline(settings, embedder=embedder)
    last = [0.0]

    def progress(done: int, total: int) -> None:
        if time.perf_counter() - last[0] > 30 or done == total:
            last[0] = time.perf_counter()
            say(f"  vectors {done}/{total}")

    t0 = time.perf_counter()
    report = pipeline.ingest_documents(corpus, replace_all=True, progress=progress,
                                       expected_chars=corpus.expected_chars)
    generate_s = corpus.seconds
    build_s = time.perf_counter() - t0 - generate_s  # the build alone, as when the corpus was drawn first
    say(f"{corpus.documents} synthetic documents ({corpus.characters / 1e6:.0f} M characters) drawn in "
        f"{generate_s:.1f} s")
    index = pipeline.index
    from rag.vectors import describe

    pipeline.close()
    return {"documents": report.documents, "chunks": report.chunks, "sentences": int(len(index.sentences)),
            "characters": corpus.characters, "generate_s": round(generate_s, 1),
            "build_s": round(build_s, 1), "stand_in_embedder_s": round(embedder.seconds, 1),
            "build_without_embedding_s": round(build_s - embedder.seconds, 1),
            "pieces_embedded_for_real": embedder.embedded_for_real,
            "build_peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "segments": len(index.segments), "vector_index": [describe(s.index.vectors) for s in index.segments]}


def serve(settings, data_dir: Path, questions: list[str], say: Callable[[str], None],
          writes: list | None = None, write_questions: list[str] = (), merge_questions: list[str] = ()) -> dict:
    """Cold start, RSS and HTTP latency of `rag serve` on the index; then, with `writes`, the write
    phase (scale_writes.py), and with `merge_questions` the merge phase (scale_merge.py), against the
    same server."""
    server = ServerProcess(settings, data_dir, data_dir.parent / "server.log", startup_timeout_s=900)
    try:
        server.start()
        say(f"server ready in {server.readyz_s:.1f} s, RSS {server.rss_ready_kib / 1024:.0f} MiB")
        half = len(questions) // 2
        phases = [load_phase(server.base_url, "/search", questions[:half], 1, 300, 5),
                  load_phase(server.base_url, "/ask", questions[half:], 1, 300, 5)] if questions else []
        for p in phases:
            say(f"{p['endpoint']} x1: {p['ok']} ok, {p['errors']} errors, p50 {p['latency_ms']['p50']} ms")
        peak = server.peak_rss_kib()
        out = {"cold_start_readyz_s": round(server.readyz_s, 2),
               "rss_at_ready_mib": round(server.rss_ready_kib / 1024, 1) if server.rss_ready_kib else None,
               "peak_rss_mib": round(peak / 1024, 1) if peak else None, "http": phases}
        if writes:
            from .scale_writes import write_phase

            out["writes"] = write_phase(server.base_url, writes, list(write_questions), say)
        if merge_questions:
            from .scale_merge import merge_phase

            out["merge"] = merge_phase(server.base_url, settings, list(merge_questions), say)
        return out
    finally:
        server.stop()


def in_process(settings, questions: list[str], nprobes: Sequence[int], say: Callable[[str], None]) -> dict:
    import faiss

    from rag.pipeline import Pipeline
    from rag.vectors import as_ivf

    pipeline = Pipeline(settings)
    t0 = time.perf_counter()
    index = pipeline.load(build_from_seeds=False)
    load_s = time.perf_counter() - t0
    retriever = pipeline.retriever
    embed, dense, lexical, hybrid = [], [], [], []
    query_vectors = []
    for q in questions:
        t0 = time.perf_counter()
        v = pipeline.embedder.encode_query(q)  # fills the cache: the timings below exclude embedding
        embed.append(time.perf_counter() - t0)
        query_vectors.append(v)
        t0 = time.perf_counter()
        index.dense_search(v, 100, None)
        dense.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        index.bm25.scores(q)
        lexical.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        retriever.search(index, q, 5)
        hybrid.append(time.perf_counter() - t0)
    out = {"load_s": round(load_s, 1), "query_embedding_ms": summary_ms(embed), "dense_ms": summary_ms(dense),
           "bm25_ms": summary_ms(lexical), "hybrid_search_ms": summary_ms(hybrid)}
    say(f"in-process: dense p50 {out['dense_ms']['p50']} ms, BM25 p50 {out['bm25_ms']['p50']} ms, "
        f"hybrid p50 {out['hybrid_search_ms']['p50']} ms (+ embedding p50 {out['query_embedding_ms']['p50']} ms)")

    # Exact neighbours: a flat index over the very vectors the served index holds (copied out in
    # blocks; this process's memory is not the one measured above).
    n = index.vectors.ntotal
    flat = faiss.IndexFlatIP(index.vectors.d)
    for a in range(0, n, 100_000):
        flat.add(index.vectors.reconstruct_batch(np.arange(a, min(a + 100_000, n))))
    Q = np.vstack(query_vectors).astype(np.float32)
    _, exact = flat.search(Q, 10)
    times = []
    for v in Q[:20]:
        t0 = time.perf_counter()
        flat.search(v[None, :], 10)
        times.append(time.perf_counter() - t0)
    out["exact_search_ms"] = summary_ms(times)
    del flat
    truth = [set(row) for row in exact.tolist()]

    def recall(rows: np.ndarray) -> float:
        return float(np.mean([len(truth[i] & set(r.tolist())) / 10 for i, r in enumerate(rows)]))

    ivfs = [x for x in (as_ivf(s.index.vectors) for s in index.segments) if x is not None]
    sweep = []
    settings_nprobe = ivfs[0].nprobe if ivfs else None
    for nprobe in (nprobes if ivfs else [None]):
        for ivf in ivfs:
            ivf.nprobe = min(nprobe, ivf.nlist)
        times, rows = [], []
        for v in Q:
            t0 = time.perf_counter()
            _, r = index.dense_search(v, 10, None)
            times.append(time.perf_counter() - t0)
            rows.append(r)
        sweep.append({"nprobe": nprobe, "recall_at_10": round(recall(np.array(rows)), 4),
                      "search_ms": summary_ms(times), "default": nprobe == settings_nprobe})
        say(f"nprobe {nprobe}: recall@10 {sweep[-1]['recall_at_10']}, p50 {sweep[-1]['search_ms']['p50']} ms")
    for ivf in ivfs:
        ivf.nprobe = settings_nprobe
    out["recall_sweep"] = sweep
    out["dense_recall_at_10"] = next((s["recall_at_10"] for s in sweep if s["default"]), sweep[0]["recall_at_10"])
    out["threads"] = faiss.omp_get_max_threads()
    return out


def real_embedder(settings, base):
    """The configured model (its ONNX export shared through base.data_dir/models)."""
    from rag.embedding import SentenceTransformerEmbedder

    return SentenceTransformerEmbedder(settings.embed_model, backend=settings.embed_backend,
                                       batch_size=settings.embed_batch_size, threads=settings.embed_threads,
                                       cache_dir=base.data_dir / "models")


def run_scale(opts: ScaleOptions, settings=None, say: Callable[[str], None] | None = None) -> dict:
    from rag.config import Settings

    say = say or (lambda msg: print(f"[scale] {msg}", file=sys.stderr, flush=True))
    base = settings or Settings()
    data_dir = opts.work / "data"
    settings = base.model_copy(update={"data_dir": data_dir})
    result: dict = {"benchmark": "rag bench-scale", "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "machine": machine_info(), "versions": versions(), "target_chunks": opts.chunks}
    pool = load_pool(opts.squad)
    questions = pool.questions[:2 * opts.queries]
    if len(questions) < 2 * opts.queries:
        raise BenchError(f"{opts.squad} has {len(pool.questions)} questions; {2 * opts.queries} are needed")
    result["pool"] = {"sentences": len(pool.sentences), "paragraphs": len(pool.paragraphs), "source": str(opts.squad)}
    built = (data_dir / "index" / "CURRENT").exists()
    if opts.reuse and not built:
        raise BenchError(f"--reuse: no index in {data_dir}")
    if not opts.reuse:
        if data_dir.exists():
            shutil.rmtree(data_dir)
        data_dir.mkdir(parents=True)
        models = base.data_dir / "models"  # the exported ONNX model, shared with the server
        models.mkdir(parents=True, exist_ok=True)
        (data_dir / "models").symlink_to(models.resolve(), target_is_directory=True)
        result["build"] = build(opts, settings, real_embedder(settings, base), pool, say)
        (opts.work / "build.json").write_text(json.dumps(result["build"], indent=2) + "\n")
        say(f"built: {result['build']}")
    elif (opts.work / "build.json").exists():  # --reuse: the build's numbers, measured when it ran
        result["build"] = json.loads((opts.work / "build.json").read_text())
    result["index_bytes"] = dir_bytes(data_dir / "index")
    files: dict[str, int] = {}
    for p in (data_dir / "index").glob("seg-*/*"):
        if p.is_file():
            files[p.name] = files.get(p.name, 0) + p.stat().st_size
    result["index_files"] = files
    if opts.writes:  # a small index beside the large one: write latency should not grow with the index
        small_data = opts.work / "small" / "data"
        if small_data.exists():
            shutil.rmtree(small_data)
        small_data.mkdir(parents=True)
        (small_data / "models").symlink_to((base.data_dir / "models").resolve(), target_is_directory=True)
        small_settings = base.model_copy(update={"data_dir": small_data})
        result["small"] = build(replace(opts, chunks=opts.small_chunks), small_settings, real_embedder(settings, base),
                                pool, say)
        result["small"]["server"] = serve(small_settings, small_data, [], say,
                                          one_paragraph_documents(pool, WRITES, 1), pool.questions[-600:-300])
    writes = one_paragraph_documents(pool, WRITES, 2) if opts.writes else None
    result["server"] = serve(settings, data_dir, questions[:opts.queries], say, writes, pool.questions[-300:],
                             (pool.questions[2 * opts.queries:-600] or questions) if opts.writes else ())
    if opts.writes:
        from rag.pipeline import Pipeline

        real = real_embedder(settings, base)
        config = Pipeline(settings, embedder=real).index_config
        result["embedding_floor_ms"] = summary_ms(embedding_floor_ms(real, writes, config))
    result["in_process"] = in_process(settings, questions[opts.queries:], opts.nprobes, say)
    result["markdown"] = markdown(result)
    write_results(result, opts.out, "scale")
    return result
