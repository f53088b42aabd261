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
import json
import os
import platform
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
DEFAULT_SQUAD = SHARED_DATA / "squad-v1.1-dev.json.gz"
SEED_DEV_QA = SHARED_DATA / "seed_dev_qa.jsonl"
ENDPOINTS = {"/ask": "question", "/search": "query"}


class BenchError(RuntimeError):
    """The benchmark could not run (no questions left, the server did not start, ...)."""


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


def run(args: argparse.Namespace) -> int:
    from rag.cli import _settings

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
        result = run_benchmark(opts, _settings(args))
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(result["markdown"])
    if opts.out:
        print(f"results written to {opts.out / 'bench.json'}", file=sys.stderr)
    return 0


# -- questions: every one used once ---------------------------------------------------------
class QuestionStream:
    """Hands out questions, each at most once in the whole run (so no cache ever answers one)."""

    def __init__(self, questions: Iterable[str]):
        self._it = iter(questions)
        self._seen: set[str] = set()
        self._lock = threading.Lock()
        self.used = 0

    def next(self) -> str:
        with self._lock:
            for q in self._it:
                q = q.strip()
                if q and q not in self._seen:
                    self._seen.add(q)
                    self.used += 1
                    return q
        raise BenchError(f"ran out of distinct questions after {self.used}; use fewer --requests")

    def take(self, n: int) -> list[str]:
        return [self.next() for _ in range(n)]


_CAPS = re.compile(r"[A-Z][\w’'-]*(?:\s+(?:of\s+)?[A-Z][\w’'-]*)*")
_NOT_ENTITIES = {"A", "An", "The", "This", "That", "These", "It", "One", "As", "Until", "However", "Meanwhile",
                 "Sir", "US", "U", "S"}
_SINGLE = ["What did {a} say?", "Who is {a}?", "What role does {a} play?", "Why is {a} mentioned?",
           "What happened with {a}?", "What is {a}'s position?", "When was {a} involved?", "Where is {a}?",
           "What does {a} want?", "How did {a} respond?", "What is said about {a}?", "What did {a} propose?",
           "Who criticised {a}?", "What concerns does {a} have?", "Which plan involves {a}?",
           "What has {a} committed to?", "What was {a}'s reaction?", "Who supports {a}?"]
_PAIR = ["What is the link between {a} and {b}?", "How did {a} react to {b}?", "What did {a} say about {b}?",
         "Do {a} and {b} agree?", "Who met {a} and {b}?", "Why are {a} and {b} in conflict?"]


def seed_questions(documents: Sequence, dev_path: Path = SEED_DEV_QA, seed: int = 0) -> list[str]:
    """Distinct questions about the seed corpus: the dev questions first, then question templates
    filled with the capitalised names found in the documents (people, places, organisations), alone
    and in pairs, in a fixed shuffled order. The seed corpus has only a handful of real questions, and
    repeating them (or appending "variant k") would either hit the query cache or measure nonsense
    queries; these are real-looking questions whose terms BM25 and the dense index both find."""
    real: list[str] = []
    if dev_path.exists():
        for line in dev_path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                real.append(json.loads(line)["question"])
    entities: dict[str, None] = {}
    for doc in documents:
        for m in _CAPS.finditer(doc.text):
            words = m.group(0).split()
            while words and words[0] in _NOT_ENTITIES:
                words = words[1:]
            name = " ".join(words).rstrip("’'s").rstrip("’'")
            if len(name) >= 3 and name not in _NOT_ENTITIES:
                entities[name] = None
    names = list(entities)
    generated = [t.format(a=a) for t in _SINGLE for a in names]
    generated += [t.format(a=a, b=b) for t in _PAIR for a in names for b in names if a != b]
    random.Random(seed).shuffle(generated)
    return real + generated


def squad_questions(items: Sequence, indexed: set[str], seed: int = 0) -> list[str]:
    """SQuAD dev questions about the indexed paragraphs (shuffled, so phases are not all about one
    article), then, should those run out, the other dev questions (real questions still, whose answer
    is simply not in the slice)."""
    inside = [i.question for i in items if set(i.gold_documents) & indexed]
    outside = [i.question for i in items if not set(i.gold_documents) & indexed]
    rng = random.Random(seed)
    rng.shuffle(inside)
    rng.shuffle(outside)
    return inside + outside


# -- small measurement helpers --------------------------------------------------------------
def _summary_ms(values_s: Sequence[float]) -> dict:
    from .metrics import mean, percentile

    ms = [v * 1000 for v in values_s]
    out = {"n": len(ms)}
    for key, q in (("p50", 50), ("p95", 95), ("p99", 99)):
        v = percentile(ms, q)
        out[key] = round(v, 2) if v is not None else None
    m = mean(ms)
    out["mean"] = round(m, 2) if m is not None else None
    return out


def _timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


def _proc_status_kib(pid: int, field: str) -> int | None:
    """A `VmHWM` / `VmRSS` line of /proc/<pid>/status in KiB (Linux); None elsewhere."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def machine_info() -> dict:
    cpu_model = platform.processor() or None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kib = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    except (OSError, ValueError):
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = None
    return {"nproc": usable, "cpu_count": os.cpu_count(), "cpu_model": cpu_model,
            "memory_gib": round(mem_kib / 2**20, 1) if mem_kib else None, "platform": platform.platform(),
            "python": platform.python_version(), "load_average_at_start": load}


def versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    from rag.index import _versions

    out = dict(_versions())
    for pkg in ("onnxruntime", "numpy", "fastapi", "uvicorn", "httpx"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "unknown"
    return out


# -- 1. ingestion -------------------------------------------------------------------------------
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
    sentence_texts = [index.documents[row].text[a:b] for row, a, b in index.sentences.tolist()]
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
def bench_floor(pipeline, questions: QuestionStream, n: int, top_k: int) -> dict:
    """Per fresh question: `encode_query` (the embedding, uncached), then `Pipeline.search` (hybrid
    retrieval; its embedding lookup now hits the cache, so it is search alone), summed per question.
    Alternating with it, `Pipeline.ask` on another fresh question: the floor plus answer generation
    (interleaved so that both see the same background load on a shared machine)."""
    embedder = pipeline.embedder
    for q in questions.take(3):  # warm-up: first-call costs of the query session
        pipeline.ask(q, top_k)
    embed, search, total, ask = [], [], [], []
    for _ in range(n):
        q = questions.next()
        e = _timed(lambda: embedder.encode_query(q))
        s = _timed(lambda: pipeline.search(q, top_k))
        embed.append(e)
        search.append(s)
        total.append(e + s)
        q = questions.next()
        ask.append(_timed(lambda: pipeline.ask(q, top_k)))
    return {"queries": n, "embed_ms": _summary_ms(embed), "search_ms": _summary_ms(search),
            "embed_plus_search_ms": _summary_ms(total), "ask_in_process_ms": _summary_ms(ask)}


# -- 3. the server over HTTP ---------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """`rag serve` in a subprocess on a free loopback port, timed from process start to ready."""

    def __init__(self, settings, data_dir: Path, log_path: Path, startup_timeout_s: float):
        self.port = _free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.data_dir, self.log_path, self.startup_timeout_s = data_dir, log_path, startup_timeout_s
        self.env = {**os.environ, "RAG_DATA_DIR": str(data_dir), "RAG_EMBED_MODEL": settings.embed_model,
                    "RAG_RATE_LIMIT": "0", "RAG_MAX_INFLIGHT": "256", "HF_HUB_OFFLINE": "1"}
        self.proc: subprocess.Popen | None = None
        self.healthz_s = self.readyz_s = None
        self.rss_ready_kib = None

    def start(self) -> None:
        import httpx

        cmd = [sys.executable, "-m", "rag.cli", "serve", "--host", "127.0.0.1", "--port", str(self.port),
               "--log-level", "warning"]
        self._log = open(self.log_path, "wb")
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(cmd, cwd=REPO, env=self.env, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = t0 + self.startup_timeout_s
        with httpx.Client(base_url=self.base_url, timeout=2.0) as client:
            while time.perf_counter() < deadline:
                if self.proc.poll() is not None:
                    raise BenchError(f"the server exited with {self.proc.returncode} while starting:\n{self.log_tail()}")
                try:
                    if self.healthz_s is None and client.get("/healthz").status_code == 200:
                        self.healthz_s = time.perf_counter() - t0
                    if self.healthz_s is not None:
                        r = client.get("/readyz")
                        if r.status_code == 200:
                            self.readyz_s = time.perf_counter() - t0
                            self.rss_ready_kib = _proc_status_kib(self.proc.pid, "VmRSS")
                            return
                        if "failed" in r.text:
                            raise BenchError(f"the server cannot serve the index: {r.text}")
                except httpx.TransportError:
                    pass
                time.sleep(0.02)
        raise BenchError(f"the server was not ready within {self.startup_timeout_s:.0f} s:\n{self.log_tail()}")

    def peak_rss_kib(self) -> int | None:
        return _proc_status_kib(self.proc.pid, "VmHWM") if self.proc else None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def load_phase(base_url: str, endpoint: str, questions: list[str], clients: int, timeout_s: float,
               top_k: int) -> dict:
    """`clients` threads, each with its own keep-alive httpx client, send the questions (each once)
    as fast as answers come back, until all are sent or `timeout_s` has passed."""
    import httpx

    key = ENDPOINTS[endpoint]
    pending = iter(questions)
    lock = threading.Lock()
    latencies: list[float] = []
    server_ms: list[float] = []
    errors: list[str] = []
    start = threading.Barrier(clients + 1)
    deadline = [float("inf")]

    def worker() -> None:
        with httpx.Client(base_url=base_url, timeout=60.0) as client:
            start.wait()
            while True:
                with lock:
                    q = next(pending, None) if time.perf_counter() < deadline[0] else None
                if q is None:
                    return
                t0 = time.perf_counter()
                try:
                    r = client.post(endpoint, json={key: q, "top_k": top_k})
                    body = r.json() if r.status_code == 200 else None
                except (httpx.HTTPError, ValueError) as exc:
                    with lock:
                        errors.append(f"{type(exc).__name__}: {exc}")
                    continue
                dt = time.perf_counter() - t0
                with lock:
                    if body is None or ("answer" not in body if endpoint == "/ask" else "passages" not in body):
                        errors.append(f"HTTP {r.status_code}: {r.text[:200]}")
                    else:
                        latencies.append(dt)
                        if endpoint == "/ask":
                            server_ms.append(body["timings_ms"]["total"] / 1000)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(clients)]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    deadline[0] = t0 + timeout_s
    for t in threads:
        t.join(timeout_s + 120)
    wall = time.perf_counter() - t0
    lat = _summary_ms(latencies)
    out = {"endpoint": endpoint, "clients": clients, "sent": len(latencies) + len(errors), "ok": len(latencies),
           "errors": len(errors), "wall_s": round(wall, 3), "requests_per_s": round(len(latencies) / wall, 2),
           "latency_ms": lat, "capped_by_time": len(latencies) + len(errors) < len(questions)}
    if server_ms:
        out["server_reported_total_ms"] = _summary_ms(server_ms)
    if errors:
        out["error_examples"] = sorted(set(errors))[:5]
    return out


def bench_http(settings, data_dir: Path, questions: QuestionStream, opts: BenchOptions,
               say: Callable[[str], None]) -> tuple[dict, list[dict]]:
    import httpx

    server = ServerProcess(settings, data_dir, data_dir.parent / "server.log", opts.startup_timeout_s)
    try:
        server.start()
        say(f"server ready in {server.readyz_s:.2f} s (/healthz after {server.healthz_s:.2f} s)")
        with httpx.Client(base_url=server.base_url, timeout=60.0) as client:
            first_ask = _timed(lambda: client.post("/ask", json={"question": questions.next()}).raise_for_status())
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
        result["index_bytes"] = _dir_bytes(run_settings.index_dir)
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


def write_results(result: dict, out: Path | None, name: str) -> None:
    """`out/<name>.json` (everything) and `out/<name>.md` (the table printed), when `out` is given."""
    if out:
        out.mkdir(parents=True, exist_ok=True)
        (out / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
        (out / f"{name}.md").write_text(result["markdown"] + "\n")


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
        f"| floor: embed query, p50 / p95 | {p(fl['embed_ms'])} ms |",
        f"| floor: hybrid search (embedding cached), p50 / p95 | {p(fl['search_ms'])} ms |",
        f"| floor: embed + search, p50 / p95 | {p(fl['embed_plus_search_ms'])} ms |",
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
