"""The exported model served without sentence-transformers, transformers or torch (rag.onnx_model):
the same vectors as sentence-transformers, for questions and for documents, and a server process
that never imports the heavy stack."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rag import onnx_model
from rag.embedding import SentenceTransformerEmbedder
from rag.onnx_query import LeanEncoder

from support import REPO, SEEDS

HEAVY = ("torch", "transformers", "sentence_transformers", "optimum", "scipy")  # scipy: bm25s imports it
TEXTS = [f"What did speaker {i} say about the peace plan?" for i in range(5)] + [
    "  Spaces,  ÜNICODE, naïve façade and a long tail " + "word " * 300,  # truncated at 256 tokens
    "x", "A chunk of prose. " * 40, "Ελληνικά και 中文 and emoji 🙂 mixed in one sentence.",
] + [f"Sentence number {i} of a document, with some words that vary: {'alpha ' * (i % 13)}" for i in range(150)]


def _sentence_transformers(embedder: SentenceTransformerEmbedder):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(embedder.model_dir, backend="onnx", device="cpu", local_files_only=True,
                               model_kwargs={"provider": "CPUExecutionProvider"})


def test_lean_vectors_equal_sentence_transformers_for_documents_and_questions(embedder):
    """Write-time (bulk, batched by token length, the wide session) and query-time vectors (each
    session, alone and batched) are sentence-transformers' to 1e-5."""
    assert isinstance(embedder._query_model, LeanEncoder)  # loaded without sentence-transformers
    assert embedder.calibrated.wait(120) and set(embedder._encoders) == {"single", "wide"} and embedder._choice
    expected = _sentence_transformers(embedder).encode(TEXTS, batch_size=64, normalize_embeddings=True,
                                                        convert_to_numpy=True)
    assert np.abs(embedder.encode(TEXTS) - expected).max() < 1e-5
    for kind, encode in embedder._encoders.items():
        assert np.allclose(np.vstack([encode([t]) for t in TEXTS[:9]]), expected[:9], atol=1e-5), kind
        assert np.allclose(encode(TEXTS[:9]), expected[:9], atol=1e-5), kind  # one padded batch


def _copy_models(embedder: SentenceTransformerEmbedder, target: Path) -> Path:
    shutil.copytree(embedder.cache_dir, target)
    return Path(embedder.model_dir.replace(str(embedder.cache_dir), str(target)))


def test_a_reference_that_differs_keeps_the_sentence_transformers_path(embedder, tmp_path, caplog):
    exported = _copy_models(embedder, tmp_path / "models")
    reference = np.load(exported / onnx_model.REFERENCE)
    reference[0, 0] += 1e-3  # as if the runtime or tokenizer now gave other vectors
    np.save(exported / onnx_model.REFERENCE, reference)
    other = SentenceTransformerEmbedder(cache_dir=tmp_path / "models", threads=1)
    assert not isinstance(other._query_model, LeanEncoder)
    assert "vectors differ" in caplog.text
    assert np.allclose(other.encode(TEXTS[:3]), embedder.encode(TEXTS[:3]), atol=1e-5)


def test_an_export_without_a_spec_gets_one_and_then_loads_lean(embedder, tmp_path):
    exported = _copy_models(embedder, tmp_path / "models")
    for name in (onnx_model.SPEC, onnx_model.TOKENIZER, onnx_model.REFERENCE):
        (exported / name).unlink()
    other = SentenceTransformerEmbedder(cache_dir=tmp_path / "models", threads=1)
    assert isinstance(other._query_model, LeanEncoder) and onnx_model.has_spec(exported)
    assert np.allclose(other.encode_query(TEXTS[0]), embedder.encode_query(TEXTS[0]), atol=1e-5)


def test_an_export_that_cannot_take_a_spec_loads_through_sentence_transformers(embedder, tmp_path, monkeypatch):
    exported = _copy_models(embedder, tmp_path / "models")
    (exported / onnx_model.SPEC).unlink()
    tries = []

    def refuse(*args) -> bool:
        tries.append(args)
        raise PermissionError("read-only file system")

    monkeypatch.setattr(onnx_model, "write_spec", refuse)
    other = SentenceTransformerEmbedder(cache_dir=tmp_path / "models", threads=1)
    assert not isinstance(other._query_model, LeanEncoder) and len(tries) == 1  # tried once, not per session
    assert np.allclose(other.encode_query(TEXTS[0]), embedder.encode_query(TEXTS[0]), atol=1e-5)


def test_a_spec_is_read_only_for_its_own_file_and_version(tmp_path):
    spec = {"version": onnx_model.SPEC_VERSION, "onnx_file": "onnx/model.onnx", "lean": True, "pad_id": 0}
    (tmp_path / onnx_model.SPEC).write_text(json.dumps(spec))
    assert onnx_model.read_spec(tmp_path, "onnx/model.onnx") == spec
    assert onnx_model.read_spec(tmp_path, "onnx/model_quint8_avx2.onnx") is None
    for changed in ({"version": 0}, {"lean": False}):
        (tmp_path / onnx_model.SPEC).write_text(json.dumps({**spec, **changed}))
        assert onnx_model.read_spec(tmp_path, "onnx/model.onnx") is None
    (tmp_path / onnx_model.SPEC).write_text("{not json")
    assert onnx_model.read_spec(tmp_path, "onnx/model.onnx") is None
    assert onnx_model.load(tmp_path, "onnx/model.onnx", 1) is None  # no tokenizer, no reference: not lean


# `rag serve` as the command line runs it; a thread in the same process waits for /readyz, searches,
# writes a document (embedded at write time) and finds it, then reports which modules are loaded.
_SERVE = """
import json, os, sys, threading, time
import httpx
from ragcli.main import main

port, heavy = int(sys.argv[1]), tuple(sys.argv[2].split(","))

def watch():
    out = {}
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as c:
            while True:
                try:
                    r = c.get("/readyz")
                    if r.status_code == 200:
                        break
                    if "failed" in r.text:
                        raise RuntimeError(r.text)
                except httpx.TransportError:
                    pass
                time.sleep(0.05)
            out["search"] = c.post("/search", json={"query": "peace plan", "top_k": 3}).status_code
            doc = {"id": "lean-write", "title": "Lean", "text": "The quokka census of Rottnest counted 11,900 quokkas."}
            out["write"] = c.post("/documents", json=doc).status_code
            hits = c.post("/search", json={"query": "quokka census Rottnest", "top_k": 1}).json()
            out["found"] = hits["passages"][0]["document_id"] if hits.get("passages") else None
    except Exception as exc:
        out["error"] = repr(exc)
    out["heavy"] = sorted(m for m in sys.modules if m.split(".")[0] in heavy)
    print("RESULT " + json.dumps(out), flush=True)
    os._exit(0)

threading.Thread(target=watch, daemon=True).start()
main(["serve", "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"])
"""


@pytest.mark.integration
def test_the_server_process_never_imports_the_model_stack(embedder, tmp_path):
    from eval.measure import free_port

    data = tmp_path / "data"
    shutil.copytree(embedder.cache_dir, data / "models")  # exported once, with its spec
    env = {**os.environ, "RAG_DATA_DIR": str(data), "RAG_SEED_DIR": str(SEEDS), "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": str(REPO), "RAG_RATE_LIMIT": "0"}
    proc = subprocess.run([sys.executable, "-c", _SERVE, str(free_port()), ",".join(HEAVY)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, proc.stdout[-2000:] + proc.stderr[-2000:]
    result = json.loads(lines[-1][len("RESULT "):])
    # The seed index was built at start (bulk embedding) and a document written over HTTP (write-time
    # embedding), and both queries answered: all without torch, transformers, sentence-transformers or scipy.
    assert result.get("error") is None and result["search"] == 200 and result["write"] in (200, 201), result
    assert result["found"] == "lean-write", result
    assert result["heavy"] == [], result
