"""The `rag` command line, run as a real subprocess (each run loads the model once)."""
from __future__ import annotations

import pytest

import json
import os
import subprocess
import sys

from support import REPO

pytestmark = pytest.mark.integration  # the `rag` command in subprocesses, with the real model

NOTES = ("Harbour log\n\n"
         "The Skellig lighthouse was automated in 1987.\n"
         "Its last keeper, Orla Brennan, now runs a small museum on Valentia Island.\n")


def _rag(args: list[str], cwd, data_dir) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_OFFLINE="1", RAG_DATA_DIR=str(data_dir), TOKENIZERS_PARALLELISM="false",
               PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "ragcli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def test_ingest_then_ask_json(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    (work / "notes.txt").write_text(NOTES, encoding="utf-8")
    (work / "broken.txt").write_bytes(b"\x00\x01binary")
    data_dir = tmp_path / "data"

    ingest = _rag(["ingest", "notes.txt", "broken.txt"], work, data_dir)
    assert ingest.returncode == 1, ingest.stderr  # a file named on the command line could not be ingested
    assert "1 added" in ingest.stdout and "1 skipped" in ingest.stdout
    assert "index holds 1 documents" in ingest.stdout
    assert "broken.txt" in ingest.stderr
    assert (data_dir / "index" / "CURRENT").is_file()

    ask = _rag(["ask", "--json", "Who runs a small museum on Valentia Island?"], work, data_dir)
    assert ask.returncode == 0, ask.stderr
    body = json.loads(ask.stdout)
    assert set(body) >= {"answer", "abstained", "generator", "citations", "passages", "timings_ms"}
    assert body["generator"] == "extractive" and body["abstained"] is False
    assert "Orla Brennan" in body["answer"]
    (citation,) = [c for c in body["citations"] if "Orla Brennan" in c["text"]]
    assert citation["source"] == "notes.txt"
    assert NOTES[citation["start"]:citation["end"]] == citation["text"]
    assert f"[{citation['id']}]" in body["answer"]
    assert all(p["source"] == "notes.txt" for p in body["passages"])


def test_ask_with_an_unknown_generator_fails_cleanly(tmp_path):
    ask = _rag(["ask", "--generator", "gpt-9", "What did Peskov say?"], tmp_path, tmp_path / "data")
    assert ask.returncode == 2
    assert "gpt-9" in ask.stderr and "Traceback" not in ask.stderr
