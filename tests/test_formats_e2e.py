"""The corpora people have, end to end with the real model: a directory of txt/md/html/pdf/docx and junk
through ingest, answers citing the right PDF page with exact offsets, an HTML table answered with nav
text never cited, metadata filters on every route, uploads of every format and the bombs over HTTP,
and a page ingested by URL from a loopback site."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import httpx
import pytest

from formats_support import (FURNITURE, MENU_HTML, PageSite, docx_with_table, pdf_bomb,
                             pdf_text_decoding_to_surrogates, pptx_two_slides, two_page_pdf, zip_bomb)
from support import REPO, SEEDS, running_server, wait_ready

NOTES_MD = ("---\ntitle: Ferry notes\nauthor: Ann Baker\nyear: 2023\ndate: 2023-06-01\ntags: [ferry, harbour]\n---\n"
            "# Ferry\n\nThe Valentia ferry crosses to Knightstown every twenty minutes in summer.\n")
PLAIN = "Plain notes: the harbour crane at Cahersiveen lifts forty tonnes of timber.\n"


def make_corpus(root):
    corpus = root / "corpus"
    corpus.mkdir()
    (corpus / "report.pdf").write_bytes(two_page_pdf())
    (corpus / "menu.html").write_text(MENU_HTML, encoding="utf-8")
    (corpus / "prices.docx").write_bytes(docx_with_table())
    (corpus / "notes.md").write_text(NOTES_MD, encoding="utf-8")
    (corpus / "plain.txt").write_text(PLAIN, encoding="utf-8")
    (corpus / "junk.bin").write_bytes(os.urandom(256))
    return corpus


@pytest.fixture(scope="module")
def corpus_pipeline(tmp_path_factory, embedder):
    from rag.config import Settings
    from rag.pipeline import Pipeline

    root = tmp_path_factory.mktemp("formats")
    corpus = make_corpus(root)
    pipeline = Pipeline(Settings(data_dir=root / "data", seed_dir=SEEDS, rate_limit=0), embedder=embedder)
    report = pipeline.ingest([corpus])
    pipeline.report = report
    pipeline.corpus = corpus
    return pipeline


@pytest.fixture(scope="module")
def client(corpus_pipeline):
    from server.app import create_app

    with running_server(create_app(corpus_pipeline, load_in_background=False)) as base:
        with httpx.Client(base_url=base, timeout=60) as c:
            wait_ready(c)
            yield c


def _doc(pipeline, source):
    return next(d for d in pipeline.index.live_documents() if d.source == source)


def test_ingest_summary_names_every_skipped_file(corpus_pipeline):
    report = corpus_pipeline.report
    assert (report.added, report.updated, report.unchanged, report.removed) == (5, 0, 0, [])
    assert [(s.path, s.kind, s.failed) for s in report.skipped] == [("corpus/junk.bin", "unsupported type", False)]
    sources = sorted(d.source for d in corpus_pipeline.index.live_documents())
    assert sources == ["corpus/menu.html", "corpus/notes.md", "corpus/plain.txt", "corpus/prices.docx",
                       "corpus/report.pdf"]
    notes = _doc(corpus_pipeline, "corpus/notes.md")
    assert notes.title == "Ferry notes" and notes.metadata["author"] == "Ann Baker"


def test_pdf_answers_cite_the_right_page_with_exact_offsets(corpus_pipeline):
    result = corpus_pipeline.ask("Who runs the small museum on Valentia Island?").model_dump(mode="json", exclude_none=True)
    assert not result["abstained"]
    cited = [c for c in result["citations"] if c["source"] == "corpus/report.pdf"]
    assert cited, result
    pdf = _doc(corpus_pipeline, "corpus/report.pdf")
    for c in cited:
        assert pdf.text[c["start"]:c["end"]] == c["text"]
        assert c["page"] == 2 and c["start"] >= pdf.metadata["pages"][1]
    assert "Orla Brennan" in " ".join(c["text"] for c in cited)
    page_one = corpus_pipeline.search("When was the Skellig lighthouse automated?", 1,
                                      filters={"source": "*.pdf"})[0]
    assert page_one.page == 1 and page_one.model_dump(mode="json", exclude_none=True)["page"] == 1
    plain = corpus_pipeline.search("harbour crane timber", 1, filters={"source": "*.txt"})[0]
    assert plain.page is None and "page" not in plain.model_dump(mode="json", exclude_none=True)


def test_an_html_table_is_answered_and_page_furniture_never_cited(corpus_pipeline):
    result = corpus_pipeline.ask("How much is a croissant?", filters={"source": "*.html"}).model_dump(mode="json", exclude_none=True)
    assert not result["abstained"]
    assert any("Croissant | 2.50 EUR" in c["text"] for c in result["citations"]), result["citations"]
    menu = _doc(corpus_pipeline, "corpus/menu.html")
    assert not any(f in menu.text for f in FURNITURE)
    for phrase in ("careers at the bakery group", "subscribe to the Lumiere letter", "privacy policy imprint"):
        for p in corpus_pipeline.search(phrase, 10):
            assert not any(f in p.text for f in FURNITURE)
    docx = corpus_pipeline.ask("How much is an eclair?", filters={"source": "*.docx"}).model_dump(mode="json", exclude_none=True)
    assert any("Eclair | 3.10 EUR" in c["text"] for c in docx["citations"]), docx


def test_metadata_filters_inside_retrieval(corpus_pipeline):
    question = "harbour ferry timber croissant museum"
    by_author = corpus_pipeline.search(question, 20, filters={"metadata.author": "Ann Baker"})
    assert by_author and {p.source for p in by_author} <= {"corpus/notes.md", "corpus/menu.html",
                                                           "corpus/prices.docx"}
    ranged = corpus_pipeline.search(question, 20, filters={"metadata.year": {"$gte": 2020, "$lt": 2024}})
    assert {p.source for p in ranged} == {"corpus/notes.md"}
    dated = corpus_pipeline.search(question, 20, filters={"metadata.date": {"$gte": "2024-03-01"}})
    assert {p.source for p in dated} <= {"corpus/menu.html", "corpus/prices.docx", "corpus/report.pdf"} and dated
    combined = corpus_pipeline.search(question, 20, filters={
        "$or": [{"metadata.format": "pdf"}, {"metadata.tags": {"$in": ["ferry"]}}],
        "$not": {"title": {"$glob": "*notes*"}}})
    assert {p.source for p in combined} == {"corpus/report.pdf"}
    assert corpus_pipeline.search(question, 20, filters={"metadata.nothing": {"$exists": True}}) == []


def test_filters_on_every_route(client):
    f = {"metadata.format": {"$in": ["pdf", "docx"]}}
    hits = client.post("/search", json={"query": "museum croissant", "top_k": 10, "filters": f}).json()["passages"]
    assert hits and {h["source"] for h in hits} <= {"corpus/report.pdf", "corpus/prices.docx"}
    body = client.post("/ask", json={"question": "Who runs the museum on Valentia Island?",
                                     "filters": {"source": "corpus/*.pdf"}}).json()
    assert body["citations"] and all(c["source"] == "corpus/report.pdf" and c["page"] == 2
                                      for c in body["citations"])
    with client.stream("POST", "/ask", json={"question": "Who runs the museum on Valentia Island?", "stream": True,
                                             "filters": {"metadata.format": "html"}}) as r:
        events = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: ")]
    assert events[0]["passages"] and all(p["source"] == "corpus/menu.html" for p in events[0]["passages"])
    chat = client.post("/v1/chat/completions", json={
        "model": "rag", "messages": [{"role": "user", "content": "Who runs the museum on Valentia Island?"}],
        "rag_filters": {"metadata.format": "pdf"}}).json()
    assert chat["citations"] and {c["source"] for c in chat["citations"]} == {"corpus/report.pdf"}
    none = client.post("/v1/chat/completions", json={
        "model": "rag", "messages": [{"role": "user", "content": "Who runs the museum on Valentia Island?"}],
        "rag_filters": {"metadata.format": "pptx"}}).json()
    assert none["rag"]["abstained"] and none["citations"] == []


@pytest.mark.parametrize("route, body", [
    ("/search", {"query": "museum"}), ("/ask", {"question": "museum"}),
    ("/ask", {"question": "museum", "stream": True}),
])
def test_malformed_filters_get_a_422_naming_the_part(client, route, body):
    r = client.post(route, json={**body, "filters": {"metadata.year": {"$gte": [2020]}}})
    assert r.status_code == 422 and "filters.metadata.year.$gte" in r.json()["detail"]
    started = time.monotonic()
    r = client.post(route, json={**body, "filters": {"source": "*a" * 30_000}})  # the 60 KB repro
    assert r.status_code in (413, 422) and time.monotonic() - started < 5


def test_malformed_rag_filters_get_an_openai_error(client):
    r = client.post("/v1/chat/completions", json={"model": "rag", "messages": [{"role": "user", "content": "x"}],
                                                  "rag_filters": {"$or": "nope"}})
    assert r.status_code == 422 and "rag_filters.$or" in r.json()["error"]["message"]


def test_listed_documents_show_no_server_paths(client, corpus_pipeline):
    docs = client.get("/documents").json()["documents"]
    assert docs and all("origin" not in d["metadata"] for d in docs)
    assert str(corpus_pipeline.corpus) not in json.dumps(docs)


@pytest.fixture
def writable(seed_data_dir, tmp_path, tmp_pipeline):
    """A copy of the seed index served on loopback, for tests that write."""

    made = []

    def make(**overrides):
        data_dir = tmp_path / f"data{len(made)}"
        made.append(data_dir)
        shutil.copytree(seed_data_dir, data_dir)
        pipeline = tmp_pipeline(data_dir, rate_limit=0, **overrides)
        pipeline.load(build_from_seeds=False)
        return pipeline

    return make


def test_uploads_of_every_format_and_the_bombs(writable, serve_pipeline):
    with serve_pipeline(writable()) as c:
        for name, data, fmt in [("report.pdf", two_page_pdf(), "pdf"), ("prices.docx", docx_with_table(), "docx"),
                                ("deck.pptx", pptx_two_slides(), "pptx")]:
            r = c.post("/documents", files={"file": (name, data, "application/octet-stream")})
            assert r.status_code == 201, r.text
            doc = c.get(f"/documents/{r.json()['documents'][0]['id']}").json()
            assert doc["metadata"]["format"] == fmt and doc["source"] == f"upload/{name}"
        body = c.post("/ask", json={"question": "Who runs the small museum on Valentia Island?",
                                    "filters": {"source": "upload/*"}}).json()
        assert body["citations"] and body["citations"][0]["page"] == 2
        started = time.monotonic()
        r = c.post("/documents", files={"file": ("bomb.pdf", pdf_bomb(), "application/pdf")})
        assert r.status_code == 413 and "limit" in r.json()["detail"]
        assert time.monotonic() - started < 20  # refused at the first oversized stream, not after 63 s
        r = c.post("/documents", files={"file": ("bomb.docx", zip_bomb(size=300_000_000), "application/zip")})
        assert r.status_code == 413 and "decompressed" in r.json()["detail"]
        r = c.post("/documents", files={"file": ("odd.pdf", pdf_text_decoding_to_surrogates(), "application/pdf")})
        assert r.status_code == 201, r.text
        assert "\ufffd" in c.get(f"/documents/{r.json()['documents'][0]['id']}").json()["text"]
        r = c.post("/documents", files={"file": ("broken.pdf", b"%PDF-1.4 nope", "application/pdf")})
        assert r.status_code == 422 and "PDF" in r.json()["detail"]
        r = c.post("/documents", files={"file": ("tool.exe", b"MZ\x90\x00", "application/octet-stream")})
        assert r.status_code == 415 and ".pptx" in r.json()["detail"]
        assert c.get("/healthz").status_code == 200


def test_a_page_ingested_by_url(writable, serve_pipeline):
    site = PageSite()
    with site.serve() as base:
        with serve_pipeline(writable(fetch_allow_private=True)) as c:
            r = c.post("/documents", json={"url": f"{base}/menu.html"})
            assert r.status_code == 201, r.text
            (res,) = r.json()["documents"]
            doc = c.get(f"/documents/{res['id']}").json()
            assert doc["source"] == f"{base}/menu.html" and doc["metadata"]["origin"] == doc["source"]
            body = c.post("/ask", json={"question": "How much is a croissant?",
                                        "filters": {"source": f"{base}/*"}}).json()
            assert any("Croissant | 2.50 EUR" in x["text"] for x in body["citations"]), body
            sent = site.bodies_sent
            again = c.post("/documents", json={"url": f"{base}/menu.html"})
            assert again.status_code == 200 and again.json()["documents"][0]["status"] == "unchanged"
            assert site.bodies_sent == sent  # answered 304: nothing downloaded or parsed again
        with serve_pipeline(writable()) as c:  # the default: private and loopback addresses refused
            r = c.post("/documents", json={"url": f"{base}/menu.html"})
            assert r.status_code == 422 and "RAG_FETCH_ALLOW_PRIVATE" in r.json()["detail"]
            r = c.post("/documents", json={"url": "ftp://example.com/x.txt"})
            assert r.status_code == 422
            r = c.post("/documents", json={"url": f"{base}/menu.html", "text": "both"})
            assert r.status_code == 422 and "either" in r.json()["detail"]


@pytest.mark.integration
def test_rag_ingest_command_summary_and_exit_code(tmp_path):
    corpus = make_corpus(tmp_path)
    (corpus / "broken.pdf").write_bytes(b"%PDF-1.4 not really")
    outside = tmp_path / "outside.txt"
    outside.write_text("A secret outside the tree.\n", encoding="utf-8")
    (corpus / "link.txt").symlink_to(outside)
    env = dict(os.environ, HF_HUB_OFFLINE="1", RAG_DATA_DIR=str(tmp_path / "data"), TOKENIZERS_PARALLELISM="false",
               PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    run = subprocess.run([sys.executable, "-m", "ragcli", "ingest", str(corpus)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 1, run.stderr  # broken.pdf failed
    assert "5 added, 0 updated, 0 unchanged, 0 removed, 3 skipped (1 failed)" in run.stdout
    assert "failed corpus/broken.pdf: broken:" in run.stderr
    assert "skipped corpus/junk.bin: unsupported type" in run.stderr
    assert "skipped corpus/link.txt: symlink: symbolic link to a file outside the directory" in run.stderr
    assert str(tmp_path) not in run.stdout.split(" at ")[0]  # sources and names: never absolute paths


def test_ingest_by_url_then_again_costs_a_304(tmp_pipeline, tmp_path):
    site = PageSite()
    with site.serve() as base:
        pipeline = tmp_pipeline(tmp_path / "data", fetch_allow_private=True)
        first = pipeline.ingest([f"{base}/menu.html", f"{base}/report.pdf"])
        assert (first.added, first.skipped) == (2, [])
        sent = site.bodies_sent
        second = pipeline.ingest([f"{base}/menu.html"])
        assert (second.added, second.updated, second.unchanged, second.removed) == (0, 0, 1, [])
        assert site.bodies_sent == sent and site.requests[-1][1]["if-none-match"]
        refused = tmp_pipeline(tmp_path / "data").ingest([f"{base}/menu.html"])  # the default settings
        assert [(s.path, s.kind, s.failed) for s in refused.skipped] == [(f"{base}/menu.html", "fetch failed", True)]
        assert "RAG_FETCH_ALLOW_PRIVATE" in refused.skipped[0].reason
