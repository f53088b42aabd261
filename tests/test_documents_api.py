"""The live document API over real HTTP: CRUD, answers that cite new documents at once, uploads,
auth and limits. Each test serves its own copy of the seed index (so writes never touch others)."""
from __future__ import annotations

import logging
import os
import shutil
from contextlib import ExitStack
from pathlib import Path

import pytest

from support import REPO, PESKOV_SENTENCE_START, markers

# A fact no seed document knows, then its replacement.
LIGHTHOUSE = ("Varnholm Island lies off the northern coast. The Quillfeather Lighthouse on Varnholm Island was "
              "designed by architect Ottilie Brandqvist in 1887. Its lamp was converted to electricity much later.")
LIGHTHOUSE_V2 = ("Varnholm Island lies off the northern coast. The Quillfeather Lighthouse on Varnholm Island was "
                 "designed by engineer Mattias Lundgren in 1902. Its lamp was converted to electricity much later.")
LIGHTHOUSE_Q = "Who designed the Quillfeather Lighthouse?"
KEY = "test-key-7f3a9c2e51b04d8a"
WRONG_KEY = "wrong-key-0b9e33aa17c24f6d"


@pytest.fixture
def serve_copy(seed_data_dir, tmp_path, tmp_pipeline, serve_pipeline):
    """`serve_copy(**settings)` -> (pipeline, client): a copy of the seed index served on loopback."""
    stack = ExitStack()
    made = []

    def make(**overrides):
        data_dir = tmp_path / f"data{len(made)}"
        shutil.copytree(seed_data_dir, data_dir)
        overrides.setdefault("rate_limit", 0)  # the API's per-client rate limit, where there is one
        pipeline = tmp_pipeline(data_dir, **overrides)
        pipeline.load(build_from_seeds=False)
        client = stack.enter_context(serve_pipeline(pipeline))
        made.append(pipeline)
        return pipeline, client

    with stack:
        yield make


def ask_cites(client, question: str, doc_id: str) -> list[dict]:
    """Ask; check every citation against the stored text over HTTP; return the citations of `doc_id`."""
    r = client.post("/ask", json={"question": question})
    assert r.status_code == 200, r.text
    body = r.json()
    assert markers(body["answer"]), body
    for c in body["citations"]:
        doc = client.get(f"/documents/{c['document_id']}")
        assert doc.status_code == 200, f"cited document {c['document_id']} is not retrievable"
        assert doc.json()["text"][c["start"]:c["end"]] == c["text"]
    return [c for c in body["citations"] if c["document_id"] == doc_id]


def lexical_hits(client, query: str, doc_id: str) -> list[dict]:
    r = client.post("/search", json={"query": query, "mode": "lexical", "top_k": 50})
    assert r.status_code == 200, r.text
    return [p for p in r.json()["passages"] if p["document_id"] == doc_id]


# -- CRUD ---------------------------------------------------------------------------------
def test_document_crud_round_trip_with_answers_that_follow(serve_copy):
    pipeline, client = serve_copy()
    (seed,) = client.get("/documents").json()["documents"]

    r = client.post("/documents", json={"id": "lighthouse", "title": "Quillfeather Lighthouse", "text": LIGHTHOUSE,
                                        "metadata": {"topic": "maritime"}})
    assert r.status_code == 201, r.text
    assert r.json() == {"documents": [{"id": "lighthouse", "status": "added"}]}

    got = client.get("/documents/lighthouse")
    assert got.status_code == 200
    doc = got.json()
    assert doc["text"] == LIGHTHOUSE and doc["title"] == "Quillfeather Lighthouse"
    assert doc["source"] == "api/lighthouse" and doc["metadata"] == {"topic": "maritime"}
    assert doc["chars"] == len(LIGHTHOUSE)
    assert client.get("/readyz").json()["documents"] == 2

    # Answerable and citable at once, with offsets into the stored text.
    cited = ask_cites(client, LIGHTHOUSE_Q, "lighthouse")
    assert cited and any("Ottilie Brandqvist" in c["text"] for c in cited)
    for c in cited:
        assert LIGHTHOUSE[c["start"]:c["end"]] == c["text"]

    # PUT replaces: the old fact is gone from answers and search, the new one is cited.
    r = client.put("/documents/lighthouse", json={"title": "Quillfeather Lighthouse", "text": LIGHTHOUSE_V2,
                                                  "metadata": {"topic": "maritime"}})
    assert r.status_code == 200 and r.json()["documents"] == [{"id": "lighthouse", "status": "updated"}]
    assert client.get("/documents/lighthouse").json()["text"] == LIGHTHOUSE_V2
    cited = ask_cites(client, LIGHTHOUSE_Q, "lighthouse")
    assert cited and any("Mattias Lundgren" in c["text"] for c in cited)
    assert not any("Brandqvist" in c["text"] for c in cited)
    assert lexical_hits(client, "Brandqvist", "lighthouse") == []
    assert client.get("/readyz").json()["documents"] == 2

    # DELETE removes it from reads, answers and search.
    r = client.delete("/documents/lighthouse")
    assert r.status_code == 204 and r.content == b""
    assert client.get("/documents/lighthouse").status_code == 404
    assert client.delete("/documents/lighthouse").status_code == 404
    r = client.post("/ask", json={"question": LIGHTHOUSE_Q})
    assert r.status_code == 200
    assert all(c["document_id"] != "lighthouse" for c in r.json()["citations"])
    assert all(p["document_id"] != "lighthouse" for p in r.json()["passages"])
    assert lexical_hits(client, "Quillfeather Lundgren", "lighthouse") == []
    listing = client.get("/documents").json()
    assert [d["id"] for d in listing["documents"]] == [seed["id"]] and listing["total"] == 1

    # The seed still answers as before.
    cited = ask_cites(client, "What did Peskov say?", seed["id"])
    assert any(c["text"].startswith(PESKOV_SENTENCE_START) for c in cited)


def test_put_creates_then_reports_unchanged_and_checks_the_body_id(serve_copy):
    _, client = serve_copy()
    r = client.put("/documents/new-by-put", json={"text": LIGHTHOUSE})
    assert r.status_code == 201 and r.json()["documents"] == [{"id": "new-by-put", "status": "added"}]
    r = client.put("/documents/new-by-put", json={"text": LIGHTHOUSE})
    assert r.status_code == 200 and r.json()["documents"] == [{"id": "new-by-put", "status": "unchanged"}]
    r = client.put("/documents/new-by-put", json={"id": "other", "text": LIGHTHOUSE_V2})
    assert r.status_code == 422 and "other" in r.json()["detail"]
    assert client.get("/documents/new-by-put").json()["text"] == LIGHTHOUSE
    assert client.get("/documents/other").status_code == 404


def test_identical_content_is_unchanged_and_ids_without_id_are_stable(serve_copy):
    pipeline, client = serve_copy()
    body = {"id": "same", "text": LIGHTHOUSE, "title": "T"}
    assert client.post("/documents", json=body).status_code == 201
    r = client.post("/documents", json=body)
    assert r.status_code == 200 and r.json()["documents"] == [{"id": "same", "status": "unchanged"}]
    # A changed title is a change.
    r = client.post("/documents", json={**body, "title": "T2"})
    assert r.status_code == 200 and r.json()["documents"] == [{"id": "same", "status": "updated"}]

    first = client.post("/documents", json={"text": LIGHTHOUSE_V2})
    assert first.status_code == 201
    (res,) = first.json()["documents"]
    assert res["status"] == "added" and res["id"] != "same"
    second = client.post("/documents", json={"text": LIGHTHOUSE_V2})
    assert second.status_code == 200 and second.json()["documents"] == [{"id": res["id"], "status": "unchanged"}]
    assert client.get(f"/documents/{res['id']}").json()["text"] == LIGHTHOUSE_V2
    assert client.get("/documents").json()["total"] == 3


def test_batch_and_paging(serve_copy):
    _, client = serve_copy()
    docs = [{"id": f"batch-{i}", "text": f"Batch document number {i} mentions the quokka census of {1990 + i}."}
            for i in range(7)]
    r = client.post("/documents", json={"documents": docs[:4]})
    assert r.status_code == 201
    assert r.json()["documents"] == [{"id": f"batch-{i}", "status": "added"} for i in range(4)]
    # Mixed: two unchanged, one updated, three added; results in request order.
    mixed = docs[:2] + [{"id": "batch-2", "text": "Batch document number 2 was rewritten."}] + docs[4:]
    r = client.post("/documents", json={"documents": mixed})
    assert r.status_code == 201
    assert [d["status"] for d in r.json()["documents"]] == ["unchanged", "unchanged", "updated", "added", "added",
                                                           "added"]
    # All unchanged -> 200.
    r = client.post("/documents", json={"documents": docs[:2]})
    assert r.status_code == 200 and {d["status"] for d in r.json()["documents"]} == {"unchanged"}
    # The same id twice in one request is refused and nothing is written.
    r = client.post("/documents", json={"documents": [{"id": "dup", "text": "a b c"}, {"id": "dup", "text": "d e"}]})
    assert r.status_code == 422
    assert client.get("/documents/dup").status_code == 404

    total = client.get("/documents").json()["total"]
    assert total == 1 + 7
    seen, offset = [], 0
    while True:
        page = client.get("/documents", params={"offset": offset, "limit": 3}).json()
        assert page["total"] == total and page["offset"] == offset and page["limit"] == 3
        assert len(page["documents"]) == min(3, max(0, total - offset))
        if not page["documents"]:
            break
        for d in page["documents"]:
            assert set(d) == {"id", "title", "source", "chars", "content_hash", "metadata"}
        seen += [d["id"] for d in page["documents"]]
        offset += 3
    assert len(seen) == len(set(seen)) == total
    assert {f"batch-{i}" for i in range(7)} <= set(seen)
    assert client.get("/documents", params={"offset": total + 5}).json()["documents"] == []
    for bad in ({"limit": 0}, {"limit": 201}, {"offset": -1}, {"limit": "x"}):
        assert client.get("/documents", params=bad).status_code == 422, bad
    assert client.get("/documents/batch-2").json()["text"] == "Batch document number 2 was rewritten."


# -- uploads -------------------------------------------------------------------------------
def minimal_pdf(lines: list[str]) -> bytes:
    """A valid one-page PDF (Helvetica text objects, exact xref offsets), written by hand."""
    def esc(s: str) -> str:
        return s.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")

    content = "BT /F1 12 Tf 72 720 Td 16 TL " + " ".join(f"({esc(line)}) Tj T*" for line in lines) + " ET"
    objects = [
        "<< /Type /Catalog /Pages 2 0 R >>",
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        "/Resources << /Font << /F1 5 0 R >> >> >>",
        f"<< /Length {len(content.encode('latin-1'))} >>\nstream\n{content}\nendstream",
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
    ]
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for i, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{i} 0 obj\n{body}\nendobj\n".encode("latin-1")
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{o:010d} 00000 n \n".encode() for o in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


def test_upload_txt_cp1252_md_and_html(serve_copy):
    _, client = serve_copy()
    raw = "Caf\u00e9 Brenvald serves \u201cthe best\u201d na\u00efve coffee for \u20ac3 in Tollmarsh.\r\n".encode("cp1252")
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")
    r = client.post("/documents", files={"file": ("cafe.txt", raw, "text/plain")})
    assert r.status_code == 201, r.text
    (res,) = r.json()["documents"]
    doc = client.get(f"/documents/{res['id']}").json()
    assert doc["text"] == raw.decode("cp1252")
    assert doc["source"] == "upload/cafe.txt"
    assert doc["metadata"]["encoding"] == "cp1252" and doc["metadata"]["format"] == "text"
    # Same bytes again: same id (from the name), unchanged.
    again = client.post("/documents", files={"file": ("cafe.txt", raw, "text/plain")})
    assert again.status_code == 200 and again.json()["documents"] == [{"id": res["id"], "status": "unchanged"}]

    md = "# Ferry timetable\n\nThe Tollmarsh ferry leaves at *07:45* every weekday.\n\n- Saturdays: 09:10\n"
    r = client.post("/documents", files={"file": ("ferry.md", md.encode(), "text/markdown")},
                    data={"id": "ferry"})
    assert r.status_code == 201 and r.json()["documents"] == [{"id": "ferry", "status": "added"}]
    doc = client.get("/documents/ferry").json()
    assert doc["text"] == md and doc["title"] == "Ferry timetable" and doc["metadata"]["format"] == "markdown"

    html = ("<html><head><title>Glass Museum of Orrefors Vik</title><style>p{color:red}</style></head><body>"
            "<script>var trackingSecret = 'SCRIPTPAYLOAD42';</script>"
            "<h1>Opening</h1><p>The glass museum in Orrefors Vik opened in 1931.</p></body></html>")
    r = client.post("/documents", files={"file": ("museum.html", html.encode(), "text/html")})
    assert r.status_code == 201
    (res,) = r.json()["documents"]
    doc = client.get(f"/documents/{res['id']}").json()
    assert doc["title"] == "Glass Museum of Orrefors Vik"
    assert "The glass museum in Orrefors Vik opened in 1931." in doc["text"]
    assert "SCRIPTPAYLOAD42" not in doc["text"] and "trackingSecret" not in doc["text"]
    assert "color:red" not in doc["text"] and "<p>" not in doc["text"]
    # A title field overrides the page's <title>.
    r = client.post("/documents", files={"file": ("museum2.html", html.encode(), "text/html")},
                    data={"title": "Chosen title"})
    assert client.get(f"/documents/{r.json()['documents'][0]['id']}").json()["title"] == "Chosen title"

    museum_ids = {res["id"], r.json()["documents"][0]["id"]}
    cited = [c for doc_id in museum_ids for c in ask_cites(client, "When did the glass museum open?", doc_id)]
    assert any("1931" in c["text"] for c in cited)


def test_upload_pdf_text_is_retrievable_and_citable(serve_copy):
    import io

    from pypdf import PdfReader

    lines = ["Harbour report for Skellvik.", "The Skellvik harbour crane lifts forty tonnes of timber."]
    pdf = minimal_pdf(lines)
    assert "Skellvik harbour crane" in PdfReader(io.BytesIO(pdf), strict=True).pages[0].extract_text()

    _, client = serve_copy()
    r = client.post("/documents", files={"file": ("harbour.pdf", pdf, "application/pdf")}, data={"id": "harbour"})
    assert r.status_code == 201, r.text
    doc = client.get("/documents/harbour").json()
    assert "The Skellvik harbour crane lifts forty tonnes of timber." in doc["text"]
    assert doc["metadata"]["format"] == "pdf" and doc["source"] == "upload/harbour.pdf"
    hits = client.post("/search", json={"query": "Skellvik harbour crane", "top_k": 1}).json()["passages"]
    assert hits and hits[0]["document_id"] == "harbour"
    cited = ask_cites(client, "How much timber does the Skellvik harbour crane lift?", "harbour")
    assert any("forty tonnes" in c["text"] for c in cited)

    # Not a PDF at all, and a PDF cut short: a clear 422, nothing stored.
    for bad in (b"%PDF-1.4\nthis is not really a pdf", pdf[: len(pdf) // 3]):
        r = client.post("/documents", files={"file": ("broken.pdf", bad, "application/pdf")})
        assert r.status_code == 422, (r.status_code, r.text)
        assert "broken.pdf" in r.json()["detail"]
    assert client.get("/documents").json()["total"] == 2


def test_upload_names_are_labels_never_paths(serve_copy, tmp_path):
    pipeline, client = serve_copy()
    cwd = Path.cwd()
    for name, expected in (("../../etc/passwd.txt", "upload/passwd.txt"),
                           ("..\\..\\windows\\evilprobe.md", "upload/evilprobe.md"),
                           ("/abs/dir/../probe name;rm -rf.txt", "upload/probe_name_rm_-rf.txt")):
        r = client.post("/documents", files={"file": (name, b"Traversal probe text about tide tables.", "text/plain")})
        assert r.status_code == 201, (name, r.text)
        (res,) = r.json()["documents"]
        doc = client.get(f"/documents/{res['id']}").json()
        assert doc["source"] == expected, name
        assert "/" not in doc["metadata"]["filename"] and ".." not in doc["metadata"]["filename"]
    data_dir = pipeline.settings.data_dir
    for probe in ("passwd.txt", "evilprobe.md", "probe_name_rm_-rf.txt"):
        assert not list(tmp_path.parent.rglob(probe)), probe
        assert not (cwd / probe).exists() and not (cwd.parent / "etc" / probe).exists()
        assert not (data_dir.parent.parent / "etc" / probe).exists()
    assert not list(REPO.glob("**/passwd.txt"))  # nothing in the checkout either
    assert not os.path.exists("/etc/passwd.txt")


def test_upload_type_and_content_refusals(serve_copy):
    _, client = serve_copy()
    for name in ("tool.exe", "noext", "archive.tar.gz", "page.php"):
        r = client.post("/documents", files={"file": (name, b"MZ some bytes", "application/octet-stream")})
        assert r.status_code == 415, (name, r.status_code, r.text)
        assert r.json()["detail"]
    r = client.post("/documents", files={"file": ("binary.txt", b"abc\x00\x01\x02def", "text/plain")})
    assert r.status_code == 415
    r = client.post("/documents", files={"file": ("empty.txt", b"   \n\t ", "text/plain")})
    assert r.status_code == 422
    r = client.post("/documents", files={"other": ("a.txt", b"text", "text/plain")})
    assert r.status_code == 422 and "file" in r.json()["detail"]
    r = client.post("/documents", files={"file": ("a.txt", b"fine text", "text/plain")}, data={"id": "../bad"})
    assert r.status_code == 422
    r = client.post("/documents", content=b"plain text body", headers={"content-type": "text/plain"})
    assert r.status_code == 415
    assert client.get("/documents").json()["total"] == 1


# -- auth ------------------------------------------------------------------------------------
def test_api_keys_guard_writes_with_identical_refusals_and_keep_keys_out_of_logs(serve_copy, caplog):
    caplog.set_level(logging.DEBUG)
    _, client = serve_copy(api_keys=[KEY, "second-key-aa11"])
    doc = {"id": "guarded", "text": LIGHTHOUSE}
    refusals = []
    for headers in ({}, {"Authorization": f"Bearer {WRONG_KEY}"}, {"Authorization": f"Bearer {KEY}x"},
                    {"Authorization": f"Basic {KEY}"}, {"Authorization": KEY}, {"Authorization": "Bearer"}):
        for method, url, kwargs in (("POST", "/documents", {"json": doc}),
                                    ("PUT", "/documents/guarded", {"json": {"text": LIGHTHOUSE}}),
                                    ("DELETE", "/documents/guarded", {})):
            r = client.request(method, url, headers=headers, **kwargs)
            assert r.status_code == 401, (method, headers, r.status_code)
            refusals.append(r.json())
    assert all(body == refusals[0] for body in refusals), "missing and wrong keys must be refused alike"
    assert KEY not in str(refusals[0]) and WRONG_KEY not in str(refusals[0])
    assert client.get("/documents/guarded").status_code == 404

    auth = {"Authorization": f"Bearer {KEY}"}
    assert client.post("/documents", json=doc, headers=auth).status_code == 201
    assert client.post("/documents", json={"id": "g2", "text": "Second key works too."},
                       headers={"Authorization": "bearer second-key-aa11"}).status_code == 201
    assert client.put("/documents/guarded", json={"text": LIGHTHOUSE_V2}, headers=auth).status_code == 200
    # Reads stay open without protect_reads.
    assert client.get("/documents/guarded").json()["text"] == LIGHTHOUSE_V2
    assert client.get("/documents").status_code == 200
    assert client.post("/search", json={"query": "Quillfeather"}).status_code == 200
    assert client.delete("/documents/guarded", headers=auth).status_code == 204

    assert any(r.name.startswith("rag") for r in caplog.records), "the server's logs were not captured"
    logged = caplog.text + "".join(str(r.__dict__) for r in caplog.records)
    assert KEY not in logged and WRONG_KEY not in logged and "second-key-aa11" not in logged


def test_protect_reads_requires_the_key_for_document_reads(serve_copy):
    _, client = serve_copy(api_keys=[KEY], protect_reads=True)
    auth = {"Authorization": f"Bearer {KEY}"}
    assert client.post("/documents", json={"id": "p", "text": LIGHTHOUSE}, headers=auth).status_code == 201
    for url in ("/documents", "/documents/p", "/documents/missing"):
        assert client.get(url).status_code == 401, url
        assert client.get(url, headers={"Authorization": f"Bearer {WRONG_KEY}"}).status_code == 401, url
    assert client.get("/documents", headers=auth).json()["total"] == 2
    assert client.get("/documents/p", headers=auth).json()["text"] == LIGHTHOUSE
    assert client.get("/documents/missing", headers=auth).status_code == 404
    assert client.get("/healthz").status_code == 200 and client.get("/readyz").status_code == 200


def test_protect_reads_also_guards_search_and_ask(serve_copy):
    """/search and /ask return the documents' text: with protect_reads, they are reads too."""
    _, client = serve_copy(api_keys=[KEY], protect_reads=True)
    auth = {"Authorization": f"Bearer {KEY}"}
    assert client.post("/search", json={"query": "Peskov"}, headers=auth).status_code == 200
    r = client.post("/search", json={"query": "Peskov"})
    assert r.status_code == 401, f"protect_reads is set, yet /search returned passages without a key ({r.status_code})"
    assert client.post("/ask", json={"question": "What did Peskov say?"}).status_code == 401


def test_no_keys_beyond_loopback_disables_writes(serve_copy):
    _, client = serve_copy(host="0.0.0.0")
    for method, url, kwargs in (("POST", "/documents", {"json": {"id": "x", "text": LIGHTHOUSE}}),
                                ("PUT", "/documents/x", {"json": {"text": LIGHTHOUSE}}),
                                ("DELETE", "/documents/x", {}),
                                ("POST", "/documents", {"files": {"file": ("a.txt", b"some text", "text/plain")}})):
        r = client.request(method, url, **kwargs)
        assert r.status_code == 403, (method, url, r.status_code)
        assert "RAG_API_KEYS" in r.json()["detail"]
    assert client.get("/documents").json()["total"] == 1
    assert client.post("/ask", json={"question": "What did Peskov say?"}).status_code == 200
    # With a key configured the same public server takes writes.
    _, keyed = serve_copy(host="0.0.0.0", api_keys=[KEY])
    assert keyed.post("/documents", json={"id": "x", "text": LIGHTHOUSE}).status_code == 401
    assert keyed.post("/documents", json={"id": "x", "text": LIGHTHOUSE},
                      headers={"Authorization": f"Bearer {KEY}"}).status_code == 201


# -- limits and invalid input ---------------------------------------------------------------
def test_size_limits(serve_copy):
    _, client = serve_copy(max_upload_bytes=4096, max_document_chars=1000, max_documents_per_request=3)
    ok = {"documents": [{"id": f"n{i}", "text": f"Note {i} about lighthouses."} for i in range(3)]}
    assert client.post("/documents", json=ok).status_code == 201
    r = client.post("/documents", json={"documents": [{"id": f"m{i}", "text": f"Note {i}."} for i in range(4)]})
    assert r.status_code == 413 and "4 documents" in r.json()["detail"]

    r = client.post("/documents", json={"id": "long", "text": "word " * 201})
    assert r.status_code == 413 and "1000" in r.json()["detail"]
    r = client.put("/documents/long", json={"text": "word " * 201})
    assert r.status_code == 413
    r = client.post("/documents", files={"file": ("long.txt", b"word " * 300, "text/plain")})
    assert r.status_code == 413

    # Bodies over max_upload_bytes: declared length, and chunked with no length at all.
    big = b"lighthouse " * 600  # 6600 bytes
    r = client.post("/documents", files={"file": ("big.txt", big, "text/plain")})
    assert r.status_code == 413 and "4096" in r.json()["detail"]
    r = client.post("/documents", json={"id": "big", "text": big.decode()})
    assert r.status_code == 413

    def chunks():
        yield b'{"id": "chunked", "text": "'
        for _ in range(10):
            yield b"x" * 1000
        yield b'"}'

    r = client.post("/documents", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413
    r = client.post("/documents", json={"id": "meta", "text": "ok text", "metadata": {"blob": "y" * 10_001}})
    assert r.status_code == 413
    ids = {d["id"] for d in client.get("/documents").json()["documents"]}
    assert ids.isdisjoint({"m0", "long", "big", "chunked", "meta"}) and {"n0", "n1", "n2"} <= ids


INVALID_BODIES = [
    '{"text": "unterminated',
    '[]',
    '{"title": "no text"}',
    '{"text": 42}',
    '{"text": ["a"]}',
    '{"text": "   "}',
    '{"text": "ok", "unknown": 1}',
    '{"id": "", "text": "ok"}',
    '{"id": "../escape", "text": "ok"}',
    '{"id": "has space", "text": "ok"}',
    '{"documents": []}',
    '{"documents": [{"text": "ok"}, {"text": 3}]}',
    '{"text": "ok", "metadata": "not an object"}',
    '{"text": "ok", "title": 7}',
]


def test_invalid_json_documents_get_422(serve_copy):
    _, client = serve_copy()
    for body in INVALID_BODIES:
        r = client.post("/documents", content=body.encode(), headers={"content-type": "application/json"})
        assert r.status_code == 422, (body, r.status_code, r.text)
        assert isinstance(r.json()["detail"], str) and r.json()["detail"], body
    for body in ('{"text": 42}', '{"id": "other", "text": "ok"}', '{"text": "ok", "extra": true}'):
        r = client.put("/documents/p1", content=body.encode(), headers={"content-type": "application/json"})
        assert r.status_code == 422, (body, r.status_code, r.text)
    assert client.get("/documents").json()["total"] == 1
