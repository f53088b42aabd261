"""`rag ask` uses a running server on the same data dir (no model loading), and a first start says what
it is doing instead of printing the ONNX exporter's warnings."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import httpx
import pytest

from server.app import create_app

from support import REPO, SEEDS, running_server, wait_ready

pytestmark = pytest.mark.integration


def _rag(args: list[str], cwd, **env) -> subprocess.CompletedProcess:
    full = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", RAG_SEED_DIR=str(SEEDS),
                PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""), **env)
    return subprocess.run([sys.executable, "-m", "ragcli", *args], cwd=cwd, env=full, capture_output=True,
                          text=True, timeout=300)


def test_rag_ask_uses_a_running_server_on_the_same_data_dir(tmp_path, seed_pipeline, seed_data_dir):
    app = create_app(seed_pipeline, load_in_background=False)
    with running_server(app) as base_url:
        with httpx.Client(base_url=base_url) as client:
            ready = wait_ready(client)
            assert len(ready["index_id"]) == 16 and str(seed_data_dir) not in json.dumps(ready)
            port = base_url.rsplit(":", 1)[1]
            started = time.monotonic()
            ask = _rag(["ask", "--json", "What did Peskov say?"], tmp_path, RAG_DATA_DIR=str(seed_data_dir),
                       RAG_PORT=port)
            took = time.monotonic() - started
            assert ask.returncode == 0, ask.stderr
            assert "Peskov" in json.loads(ask.stdout)["answer"]
            asked = [line for line in client.get("/metrics").text.splitlines()
                     if line.startswith('rag_http_requests_total{method="POST",route="/ask"')]
            assert asked and asked[0].endswith(" 1.0"), asked  # the server answered it
            print(f"rag ask through the server: {took:.2f} s")


def test_first_start_says_what_it_does_without_exporter_warnings(tmp_path):
    ask = _rag(["ask", "--local", "What did Peskov say?"], tmp_path, RAG_DATA_DIR=str(tmp_path / "data"))
    assert ask.returncode == 0, ask.stderr
    assert "Peskov" in ask.stdout
    assert "indexing" in ask.stderr and "(1 document)" in ask.stderr
    assert "exporting the embedding model to ONNX" in ask.stderr
    for noise in ("TracerWarning", "save_pretrained", "site-packages", "torch_dtype", "Traceback"):
        assert noise not in ask.stderr, ask.stderr
