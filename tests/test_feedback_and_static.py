"""Feedback storage and export, the favicon, HEAD on the widget, and the OpenAPI security scheme: the
app's routes without the model (the pipeline is never loaded)."""
from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from eval.datasets import load_jsonl
from rag.config import Settings
from rag.pipeline import Pipeline
from server.app import create_app
from server.feedback import MAX_RECORD_BYTES, store_for

RATING = {"question": "What did Peskov say?", "answer": "Russia rejected it [1].", "verdict": "up",
          "citations": [{"id": 1, "document_id": "doc-1", "chunk_id": "doc-1:2", "title": "T", "source": "s.txt",
                         "text": "Russia rejected it.", "start": 10, "end": 29, "score": 0.5}]}


@pytest.fixture
def client(tmp_path):
    def make(**settings) -> TestClient:
        return TestClient(create_app(Pipeline(Settings(data_dir=tmp_path / "data", **settings))),
                          base_url="http://127.0.0.1", client=("127.0.0.1", 40000))  # as a local client
    return make


def test_a_rating_is_stored_durably_counted_and_exported_as_an_eval_dataset(client, tmp_path):
    c = client()
    first = c.post("/feedback", json=RATING)
    assert first.status_code == 201 and first.json()["verdict"] == "up"
    down = c.post("/feedback", json={"question": "Who won?", "answer": "The documents don't say.", "verdict": "down",
                                     "abstained": True})
    commented = c.post("/feedback", json={"question": "Who won?", "answer": "The documents don't say.",
                                          "verdict": "down", "abstained": True, "comment": "It is in paragraph 3",
                                          "supersedes": down.json()["id"]})
    assert commented.status_code == 201
    # Every record is on disk (append-only); the export shows the current rating per answer.
    stored = store_for(tmp_path / "data").path.read_text(encoding="utf-8").splitlines()
    assert len(stored) == 3 and json.loads(stored[0])["citations"][0]["document_id"] == "doc-1"
    assert "score" not in json.loads(stored[0])["citations"][0]
    export = c.get("/feedback", params={"format": "jsonl"})
    assert export.status_code == 200 and export.headers["content-type"].startswith("application/x-ndjson")
    rows = [json.loads(line) for line in export.text.splitlines()]
    assert rows[0] == {"id": f"feedback-{first.json()['id']}", "question": "What did Peskov say?",
                       "answers": ["Russia rejected it."], "gold_documents": ["doc-1"], "answerable": True,
                       "verdict": "up", "comment": None, "rated_at": rows[0]["rated_at"]}
    assert rows[1]["comment"] == "It is in paragraph 3" and rows[1]["answerable"] is True and rows[1]["answers"] == []
    assert [json.loads(x)["verdict"] for x in c.get("/feedback?verdict=up").text.splitlines()] == ["up"]
    metrics = c.get("/metrics").text
    assert 'rag_feedback_total{verdict="up"} 1.0' in metrics
    assert 'rag_feedback_total{verdict="down"} 1.0' in metrics  # the comment is not a second rating
    path = tmp_path / "fb.jsonl"
    path.write_text(export.text, encoding="utf-8")
    assert [i.answerable for i in load_jsonl(path).items] == [True, True]


def test_a_torn_last_line_is_skipped(client, tmp_path):
    c = client()
    assert c.post("/feedback", json=RATING).status_code == 201
    with store_for(tmp_path / "data").path.open("a", encoding="utf-8") as f:
        f.write('{"id": "abc", "verdict": "up", "quest')  # a crash mid-append
    assert len(c.get("/feedback").text.splitlines()) == 1
    assert c.post("/feedback", json=RATING).status_code == 201  # appends after it still read back
    assert len(c.get("/feedback").text.splitlines()) == 2


@pytest.mark.parametrize("body, status", [
    ({**RATING, "verdict": "meh"}, 422),
    ({**RATING, "question": ""}, 422),
    ({**RATING, "comment": "x" * 2001}, 422),
    ({**RATING, "citations": RATING["citations"] * 51}, 422),
    ({**RATING, "surprise": 1}, 422),
    ({**RATING, "supersedes": "../../etc"}, 422),
    ({**RATING, "answer": "\u4e2d" * 19000}, 413),  # 57 KB of UTF-8: over the request body limit
])
def test_bad_feedback_is_refused(client, body, status):
    r = client().post("/feedback", json=body)
    assert r.status_code == status, r.text


def test_a_record_over_the_stored_size_limit_is_refused(client):
    big = {**RATING, "answer": "a" * 19000, "citations": [{**RATING["citations"][0], "text": "b" * 4900}] * 8}
    r = client(max_body_bytes=1024 * 1024).post("/feedback", json=big)
    assert r.status_code == 413 and str(MAX_RECORD_BYTES) in r.json()["detail"]


def test_export_needs_a_write_key_posting_needs_a_read_key(client):
    c = client(api_keys="k1")
    assert c.post("/feedback", json=RATING).status_code == 201  # the widget carries no secret
    assert c.get("/feedback").status_code == 401
    assert c.get("/feedback", headers={"Authorization": "Bearer k1"}).status_code == 200
    protected = client(api_keys="k1", protect_reads=True)
    assert protected.post("/feedback", json=RATING).status_code == 401


def test_favicon_head_widget_and_offline_docs(client):
    c = client()
    icon = c.get("/favicon.ico")
    assert icon.status_code == 200 and icon.headers["content-type"] == "image/x-icon"
    assert icon.content[:4] == b"\x00\x00\x01\x00"  # an ICO file
    head = c.head("/widget.js")
    assert head.status_code == 200 and head.content == b"" and head.headers["content-type"].startswith("text/javascript")
    assert int(head.headers["content-length"]) == len(c.get("/widget.js").content)
    for page, asset in (("/docs", "/docs-assets/swagger-ui-bundle.js"), ("/redoc", "/docs-assets/redoc.standalone.js")):
        html = c.get(page).text
        assert asset in html and "cdn." not in html and "fonts.googleapis" not in html
        assert c.get(asset).status_code == 200
    assert c.get("/docs-assets/swagger-ui.css").status_code == 200


def test_the_openapi_document_declares_the_bearer_scheme(client):
    spec = client().get("/openapi.json").json()
    assert spec["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http", "scheme": "bearer", "description": spec["components"]["securitySchemes"]["bearerAuth"]["description"]}
    assert spec["paths"]["/documents"]["post"]["security"] == [{"bearerAuth": []}, {}]
    assert "/feedback" in spec["paths"]


@pytest.mark.integration  # a subprocess
def test_rag_feedback_export_writes_the_same_dataset(client, tmp_path):
    import subprocess
    import sys

    from support import REPO

    c = client()
    assert c.post("/feedback", json=RATING).status_code == 201
    out = tmp_path / "fb.jsonl"
    run = subprocess.run([sys.executable, "-m", "ragcli", "--data-dir", str(tmp_path / "data"), "feedback", "export",
                          "--verdict", "up", "--out", str(out)], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "wrote 1 rated questions" in run.stderr
    assert out.read_text(encoding="utf-8") == c.get("/feedback?verdict=up").text
    assert load_jsonl(out).items[0].answers == ("Russia rejected it.",)
