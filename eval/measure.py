"""Measuring: timing summaries, machine and package facts, and a real `rag serve` process under
bounded HTTP load. Shared by `rag bench` and `rag bench-scale`."""
from __future__ import annotations

import json
import os
import platform
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Sequence

REPO = Path(__file__).resolve().parents[1]
ENDPOINTS = {"/ask": "question", "/search": "query"}


class BenchError(RuntimeError):
    """The benchmark could not run (no questions left, the server did not start, ...)."""

def summary_ms(values_s: Sequence[float]) -> dict:
    from .metrics import mean, percentile

    ms = [v * 1000 for v in values_s]
    out = {"n": len(ms)}
    for key, q in (("p50", 50), ("p95", 95), ("p99", 99)):
        v = percentile(ms, q)
        out[key] = round(v, 2) if v is not None else None
    m = mean(ms)
    out["mean"] = round(m, 2) if m is not None else None
    return out


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


def proc_status_kib(pid: int, field: str) -> int | None:
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

    from rag.snapshot import package_versions

    out = dict(package_versions())
    for pkg in ("onnxruntime", "numpy", "fastapi", "uvicorn", "httpx"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "unknown"
    return out


# -- 1. ingestion -------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """`rag serve` in a subprocess on a free loopback port, timed from process start to ready."""

    def __init__(self, settings, data_dir: Path, log_path: Path, startup_timeout_s: float,
                 env: dict[str, str] | None = None):
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.data_dir, self.log_path, self.startup_timeout_s = data_dir, log_path, startup_timeout_s
        self.env = {**os.environ, "RAG_DATA_DIR": str(data_dir), "RAG_EMBED_MODEL": settings.embed_model,
                    "RAG_RATE_LIMIT": "0", "RAG_MAX_INFLIGHT": "256", "HF_HUB_OFFLINE": "1", **(env or {})}
        self.proc: subprocess.Popen | None = None
        self.healthz_s = self.readyz_s = None
        self.rss_ready_kib = None

    def start(self) -> None:
        import httpx

        cmd = [sys.executable, "-m", "ragcli", "serve", "--host", "127.0.0.1", "--port", str(self.port),
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
                            self.rss_ready_kib = proc_status_kib(self.proc.pid, "VmRSS")
                            return
                        if "failed" in r.text:
                            raise BenchError(f"the server cannot serve the index: {r.text}")
                except httpx.TransportError:
                    pass
                time.sleep(0.02)
        raise BenchError(f"the server was not ready within {self.startup_timeout_s:.0f} s:\n{self.log_tail()}")

    def peak_rss_kib(self) -> int | None:
        return proc_status_kib(self.proc.pid, "VmHWM") if self.proc else None

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
    lat = summary_ms(latencies)
    out = {"endpoint": endpoint, "clients": clients, "sent": len(latencies) + len(errors), "ok": len(latencies),
           "errors": len(errors), "wall_s": round(wall, 3), "requests_per_s": round(len(latencies) / wall, 2),
           "latency_ms": lat, "capped_by_time": len(latencies) + len(errors) < len(questions)}
    if server_ms:
        out["server_reported_total_ms"] = summary_ms(server_ms)
    if errors:
        out["error_examples"] = sorted(set(errors))[:5]
    return out



def write_results(result: dict, out: Path | None, name: str) -> None:
    """`out/<name>.json` (everything) and `out/<name>.md` (the table printed), when `out` is given."""
    if out:
        out.mkdir(parents=True, exist_ok=True)
        (out / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
        (out / f"{name}.md").write_text(result["markdown"] + "\n")


