"""What a start is about to do, in words ("indexing seeds/ (1 document)…"), and the shortcut that lets
`rag ask` use a server that is already running instead of loading the model and the index itself
(seconds; the question takes milliseconds)."""
from __future__ import annotations

import hashlib
from pathlib import Path

import httpx

from rag.config import Settings

PROBE_TIMEOUT_S = 0.5


def first_start_notes(settings: Settings) -> list[str]:
    """Lines saying what the first start (or a start with a new model) will spend its time on."""
    from rag.documents import SUPPORTED_SUFFIXES  # here: `rag ask` through a server never needs them
    from rag.embedding import _onnx_dir, resolve_model_path

    notes = []
    if not (settings.index_dir / "CURRENT").exists():
        seed = Path(settings.seed_dir)
        n = sum(1 for p in seed.rglob("*") if p.is_file() and p.suffix.lower() in SUPPORTED_SUFFIXES) \
            if seed.is_dir() else 0
        notes.append(f"no index in {settings.index_dir} yet: indexing {seed}/ ({n} document{'s' * (n != 1)})\u2026")
    if settings.embed_backend != "torch":
        exported = _onnx_dir(settings.data_dir / "models", resolve_model_path(settings.embed_model),
                             settings.embed_backend)
        if not exported.exists():
            notes.append(f"exporting the embedding model to ONNX under {settings.data_dir / 'models'} "
                         f"(once; later starts reuse it)\u2026")
    return notes


def index_id(settings: Settings) -> str:
    """Names the data directory a server serves without revealing its path: lets `rag ask` check that a
    running server answers from the same index it would load."""
    return hashlib.sha256(str(Path(settings.data_dir).resolve()).encode()).hexdigest()[:16]


def ask_running_server(settings: Settings, question: str, top_k: int | None, generator: str | None) -> dict | None:
    """The answer from a server on RAG_HOST:RAG_PORT serving the same data directory, or None when there
    is none (or it refuses), so that the caller answers in-process instead."""
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "", "::") else settings.host
    base = f"http://{'[' + host + ']' if ':' in host else host}:{settings.port}"
    headers = {"Authorization": f"Bearer {settings.api_keys[0]}"} if settings.api_keys else {}
    try:
        with httpx.Client(base_url=base, headers=headers, timeout=httpx.Timeout(60, connect=PROBE_TIMEOUT_S)) as client:
            ready = client.get("/readyz", timeout=PROBE_TIMEOUT_S)
            if ready.status_code != 200 or ready.json().get("index_id") != index_id(settings):
                return None
            body = {"question": question, "generator": generator}
            if top_k is not None:
                body["top_k"] = top_k
            r = client.post("/ask", json={k: v for k, v in body.items() if v is not None})
            return r.json() if r.status_code == 200 else None
    except (httpx.HTTPError, ValueError):
        return None
