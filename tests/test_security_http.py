"""Issue 13's edge repros over a real server on loopback: keyless writes refused from other sites,
through proxies and under other host names; forwarded addresses believed only from trusted proxies;
JSON bodies bounded in depth and encoding on every route; OpenAI-shaped middleware errors; strict
booleans; bounded metric labels; slow-header connections closed; a settings error at start-up."""
from __future__ import annotations

import json
import logging
import os
import selectors
import shutil
import socket
import subprocess
import sys
import threading
import time
from contextlib import ExitStack

import httpx
import pytest

from support import REPO

pytestmark = pytest.mark.integration

TEXT = "The Quillfeather Lighthouse on Varnholm Island was designed by architect Ottilie Brandqvist in 1887."
SURROGATE = "lone surrogate"


@pytest.fixture
def serve(seed_data_dir, tmp_path, tmp_pipeline, serve_pipeline):
    """`serve(**settings)` -> client of a real server over a copy of the seed index (writes stay local)."""
    stack = ExitStack()
    count = [0]

    def make(**overrides) -> httpx.Client:
        data_dir = tmp_path / f"data{count[0]}"
        count[0] += 1
        shutil.copytree(seed_data_dir, data_dir)
        overrides.setdefault("rate_limit", 0)
        pipeline = tmp_pipeline(data_dir, **overrides)
        pipeline.load(build_from_seeds=False)
        return stack.enter_context(serve_pipeline(pipeline))

    with stack:
        yield make


def own_origin(client: httpx.Client) -> str:
    return f"http://127.0.0.1:{client.base_url.port}"


def doc(doc_id: str) -> dict:
    return {"id": doc_id, "text": TEXT}


def upload(doc_id: str) -> dict:
    return {"files": {"file": (f"{doc_id}.txt", TEXT.encode(), "text/plain")}, "data": {"id": doc_id}}


def planted(client: httpx.Client, doc_id: str) -> bool:
    r = client.get(f"/documents/{doc_id}")
    assert r.status_code in (200, 404), r.text
    return r.status_code == 200


# -- 5. cross-site keyless writes -------------------------------------------------------------
def test_keyless_writes_refuse_other_sites_with_forged_browser_headers(serve):
    client = serve()
    own = own_origin(client)
    other_port = f"http://127.0.0.1:{client.base_url.port + 1}"
    refused = [
        # (doc id, request kwargs): what a page on another site can make a browser send
        ("nocors-upload", {**upload("nocors-upload"), "headers": {"origin": "http://evil.example",
                                                                  "sec-fetch-site": "cross-site",
                                                                  "sec-fetch-mode": "no-cors"}}),
        ("origin-only", {**upload("origin-only"), "headers": {"origin": "http://evil.example"}}),
        ("form-post", {"data": {"id": "form-post", "text": TEXT}, "headers": {"origin": "http://evil.example"}}),
        ("cross-json", {"json": doc("cross-json"), "headers": {"origin": own, "sec-fetch-site": "cross-site"}}),
        ("null-origin", {"json": doc("null-origin"), "headers": {"origin": "null"}}),
        ("other-port", {"json": doc("other-port"), "headers": {"origin": other_port, "sec-fetch-site": "same-site"}}),
        ("same-site-no-origin", {"json": doc("same-site-no-origin"), "headers": {"sec-fetch-site": "same-site"}}),
        ("own-simple-upload", {**upload("own-simple-upload"), "headers": {"origin": own}}),
        ("own-text-plain", {"content": json.dumps(doc("own-text-plain")).encode(),
                            "headers": {"origin": own, "content-type": "text/plain"}}),
    ]
    for doc_id, kwargs in refused:
        r = client.post("/documents", **kwargs)
        assert r.status_code == 403, f"{doc_id}: {r.status_code} {r.text}"
        assert "API key" in r.json()["detail"] or "X-RAG-Client" in r.json()["detail"], r.text
    r = client.put("/documents/cross-put", json=doc("cross-put"),
                   headers={"origin": "http://evil.example", "sec-fetch-site": "cross-site"})
    assert r.status_code == 403
    for doc_id, _ in refused:
        assert not planted(client, doc_id), f"{doc_id} was planted"
    assert not planted(client, "cross-put")

    # Accepted: clients that are not browsers, and this server's own pages making non-simple requests.
    accepted = [
        ("curl-upload", {**upload("curl-upload")}),
        ("curl-json", {"json": doc("curl-json")}),
        ("own-json", {"json": doc("own-json"), "headers": {"origin": own, "sec-fetch-site": "same-origin"}}),
        ("own-upload", {**upload("own-upload"), "headers": {"origin": own, "x-rag-client": "page"}}),
    ]
    for doc_id, kwargs in accepted:
        r = client.post("/documents", **kwargs)
        assert r.status_code == 201, f"{doc_id}: {r.status_code} {r.text}"
        assert planted(client, doc_id)
    r = client.delete("/documents/curl-json", headers={"origin": "http://evil.example", "sec-fetch-site": "cross-site"})
    assert r.status_code == 403 and planted(client, "curl-json")
    assert client.delete("/documents/curl-json", headers={"origin": own}).status_code == 204


def test_a_listed_origin_on_the_same_site_may_write_without_a_key(serve):
    listed = "http://127.0.0.1:1"  # another port on this machine: same site, another origin
    client = serve(cors_origins=[listed])
    r = client.post("/documents", json=doc("listed"), headers={"origin": listed, "sec-fetch-site": "same-site"})
    assert r.status_code == 201, r.text
    # Listing an origin does not open cross-site writes, and `*` never opens keyless writes.
    r = client.post("/documents", json=doc("listed-x"), headers={"origin": listed, "sec-fetch-site": "cross-site"})
    assert r.status_code == 403
    star = serve(cors_origins=["*"])
    r = star.post("/documents", json=doc("star"), headers={"origin": "http://evil.example"})
    assert r.status_code == 403 and not planted(star, "star")


def test_writes_with_a_key_do_not_depend_on_origin(serve):
    client = serve(api_keys=["k-0123456789abcdef"])
    r = client.post("/documents", json=doc("keyed"), headers={"authorization": "Bearer k-0123456789abcdef",
                                                              "origin": "http://app.example"})
    assert r.status_code == 201
    r = client.post("/documents", json=doc("unkeyed"), headers={"origin": "http://app.example"})
    assert r.status_code == 401


# -- 7. proxies ---------------------------------------------------------------------------------
@pytest.mark.parametrize("header", [{"x-forwarded-for": "203.0.113.5"}, {"forwarded": "for=203.0.113.5"},
                                    {"x-real-ip": "203.0.113.5"}])
def test_a_relayed_keyless_write_is_not_local(serve, caplog, header):
    client = serve()
    with caplog.at_level(logging.INFO, logger="rag.access"):
        r = client.post("/documents", json=doc("relayed"), headers=header)
        assert r.status_code == 403 and "proxy" in r.json()["detail"]
        assert not planted(client, "relayed")
    clients = {getattr(rec, "fields", {}).get("client") for rec in caplog.records if rec.name == "rag.access"}
    assert clients == {"127.0.0.1"}, f"the log believed a forwarded address: {clients}"


def test_rotating_forwarded_for_does_not_escape_the_rate_limit(serve):
    client = serve(rate_limit=0.5, rate_burst=3)
    statuses = [client.get("/documents", headers={"x-forwarded-for": f"198.51.100.{i}"}).status_code
                for i in range(8)]
    assert statuses[:3] == [200, 200, 200] and 429 in statuses[3:], statuses
    r = client.get("/v1/models", headers={"x-forwarded-for": "198.51.100.99"})
    assert r.status_code == 429 and r.headers["retry-after"]
    assert r.json()["error"]["type"] == "rate_limit_error"  # OpenAI's error object under /v1/


def test_a_trusted_proxy_names_the_client(serve, caplog):
    client = serve(trusted_proxies=["127.0.0.0/8"], rate_limit=0.5, rate_burst=2)
    a, b = {"x-forwarded-for": "203.0.113.5"}, {"x-forwarded-for": "10.9.8.7, 203.0.113.6"}
    with caplog.at_level(logging.INFO, logger="rag.access"):
        assert [client.get("/documents", headers=a).status_code for _ in range(3)] == [200, 200, 429]
        assert client.get("/documents", headers=b).status_code == 200  # another client, another bucket
    fields = [getattr(rec, "fields", {}) for rec in caplog.records if rec.name == "rag.access"]
    assert {f["client"] for f in fields} == {"203.0.113.5", "203.0.113.6"}
    assert {f.get("proxy") for f in fields} == {"127.0.0.1"}
    # Relayed is not local, even through a trusted proxy.
    assert client.post("/documents", json=doc("via-proxy"), headers=b).status_code == 403


# -- 6. Host header -------------------------------------------------------------------------------
def test_unknown_host_names_are_refused(serve):
    client = serve()
    port = client.base_url.port
    evil = {"host": f"rebind.example:{port}"}
    for method, path, kwargs in [("GET", "/healthz", {}), ("GET", "/readyz", {}), ("GET", "/documents", {}),
                                 ("POST", "/ask", {"json": {"question": "What did Peskov say?"}}),
                                 ("POST", "/documents", {"json": doc("rebound")}), ("GET", "/", {})]:
        r = client.request(method, path, headers=evil, **kwargs)
        assert r.status_code == 421, f"{method} {path}: {r.status_code}"
        assert "RAG_ALLOWED_HOSTS" in r.json()["detail"]
    r = client.get("/v1/models", headers=evil)
    assert r.status_code == 421 and "RAG_ALLOWED_HOSTS" in r.json()["error"]["message"]
    assert client.get("/healthz", headers={"host": "bad host"}).status_code == 400
    assert not planted(client, "rebound")
    for host in (f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}", "localhost"):
        assert client.get("/healthz", headers={"host": host}).status_code == 200, host


def test_allowed_hosts_when_listening_everywhere(make_seed_pipeline, serve_pipeline):
    # Bound (by settings) to all interfaces; the test server itself still listens on 127.0.0.1 only.
    with serve_pipeline(make_seed_pipeline(host="0.0.0.0", allowed_hosts=["api.example.com", "*.corp.example"],
                                           rate_limit=0)) as client:
        for host, status in [("api.example.com", 200), ("rag.corp.example:8000", 200), ("192.0.2.10:8000", 200),
                             ("localhost", 200), ("other.example", 421), ("api.example.com.evil.example", 421)]:
            assert client.get("/healthz", headers={"host": host}).status_code == status, host
        # Bound beyond loopback without keys: writes are off whatever the host.
        r = client.post("/documents", json=doc("public"), headers={"host": "api.example.com"})
        assert r.status_code == 403
    with serve_pipeline(make_seed_pipeline(host="0.0.0.0", allowed_hosts=["*"], rate_limit=0)) as client:
        assert client.get("/healthz", headers={"host": "anything.example"}).status_code == 200


# -- 8. protect_reads without keys ------------------------------------------------------------------
def test_protect_reads_without_keys_refuses_to_start(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "RAG_API_KEYS"}
    env.update(RAG_PROTECT_READS="true", RAG_DATA_DIR=str(tmp_path), PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-m", "ragcli", "serve", "--port", "0"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "RAG_PROTECT_READS=true needs at least one key in RAG_API_KEYS" in proc.stderr


# -- 12. JSON depth and text encoding, the same on every route -------------------------------------
def nested(depth: int) -> dict:
    value: object = "leaf"
    for _ in range(depth):
        value = {"k": value}
    return value  # type: ignore[return-value]


def test_deep_json_is_refused_before_parsing(serve):
    client = serve()
    body = b'{"text": "x", "metadata": ' + b'{"a":' * 5000 + b"1" + b"}" * 5001
    r = client.post("/documents", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 422 and "levels deep" in r.json()["detail"]
    r = client.put("/documents/deep", json={"text": TEXT, "metadata": nested(260)})
    assert r.status_code == 422 and "levels deep" in r.json()["detail"]
    assert not planted(client, "deep")
    r = client.post("/ask", content=b'{"question": "x", "filters": ' + b"[" * 40 + b"]" * 40 + b"}",
                    headers={"content-type": "application/json"})
    assert r.status_code == 422 and "levels deep" in r.json()["detail"]
    # Metadata within the bound is stored and reads back on every route that shows it.
    r = client.put("/documents/nested", json={"text": TEXT, "metadata": nested(25)})
    assert r.status_code == 201, r.text
    assert client.get("/documents/nested").json()["metadata"] == nested(25)
    assert client.get("/documents", params={"limit": 200}).status_code == 200
    assert client.get("/healthz").status_code == 200


def test_lone_surrogates_get_the_same_422_on_every_route(serve):
    client = serve()
    cases = [
        ("/ask", b'{"question": "What did \\ud800 Peskov say?"}'),
        ("/search", b'{"query": "Peskov \\udfff"}'),
        ("/v1/chat/completions", b'{"model": "rag", "messages": [{"role": "user", "content": '
                                 b'[{"type": "text", "text": "What did Peskov say? \\ud800"}]}]}'),
        ("/documents", b'{"text": "fine", "title": "\\ud83d"}'),
        ("/documents", b'{"text": "fine", "metadata": {"tags": ["ok", {"k": "\\udc00"}]}}'),
        ("/documents", b'{"documents": [{"text": "fine", "source": "x\\udc00"}]}'),
        ("/ask", '{"question": "raw bytes \ud800"}'.encode("utf-8", "surrogatepass")),
    ]
    for path, body in cases:
        r = client.post(path, content=body, headers={"content-type": "application/json"})
        assert r.status_code == 422, f"{path} {body!r}: {r.status_code} {r.text}"
        message = r.json()["error"]["message"] if path.startswith("/v1/") else r.json()["detail"]
        assert SURROGATE in message or "UTF-8" in message, message
    r = client.put("/documents/s1", content=b'{"text": "fine \\ud800"}', headers={"content-type": "application/json"})
    assert r.status_code == 422 and SURROGATE in r.json()["detail"]
    # Text that reaches the server another way (a form field decoded as UTF-7 here) meets the same rule.
    r = client.post("/documents", files={"file": ("s2.txt", TEXT.encode(), "text/plain")},
                    data={"title": "+2AA-", "id": "s2"},
                    headers={"content-type": "multipart/form-data; boundary=b0undary; charset=utf-7"})
    assert r.status_code == 422 and "lone surrogate" in r.json()["detail"], r.text
    assert not planted(client, "s1") and not planted(client, "s2")


def pdf_with_text_mapped_to(code_point: str) -> bytes:
    """A one-page PDF whose font's ToUnicode map turns the glyph "B" into `code_point` (hex)."""
    cmap = (b"/CIDInit /ProcSet findresource begin 12 dict begin begincmap /CMapName /Custom def /CMapType 2 def\n"
            b"1 begincodespacerange <00> <FF> endcodespacerange\n"
            b"2 beginbfchar <41> <0041> <42> <" + code_point.encode() + b"> endbfchar\n"
            b"endcmap CMapName currentdict /CMap defineresource pop end end")
    content = b"BT /F1 12 Tf 72 720 Td (AB lighthouse) Tj ET"
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
               b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
               b"/Resources << /Font << /F1 5 0 R >> >> >>",
               b"<< /Length %d >>\nstream\n%s\nendstream" % (len(content), content),
               b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /ToUnicode 6 0 R >>",
               b"<< /Length %d >>\nstream\n%s\nendstream" % (len(cmap), cmap)]
    out, offsets = bytearray(b"%PDF-1.4\n"), []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def test_an_upload_whose_text_decodes_to_a_lone_surrogate_is_stored_cleaned_not_a_500(serve):
    """Text extracted from a file is ours to clean (the loaders replace a lone surrogate with U+FFFD, as
    for any undecodable character); text a client sends as JSON is refused with 422 instead."""
    client = serve()
    r = client.post("/documents", files={"file": ("bad.pdf", pdf_with_text_mapped_to("D800"), "application/pdf")},
                    data={"id": "bad-pdf"})
    assert r.status_code == 201, r.text
    stored = client.get("/documents/bad-pdf").json()["text"]
    assert "\ufffd" in stored and stored.encode("utf-8")
    r = client.post("/documents", files={"file": ("good.pdf", pdf_with_text_mapped_to("0042"), "application/pdf")},
                    data={"id": "good-pdf"})
    assert r.status_code == 201, r.text
    assert client.get("/documents/good-pdf").json()["text"].startswith("AB lighthouse")


# -- 13. strict booleans, OpenAI error objects, metric labels, slow headers -----------------------
def test_stream_must_be_a_json_boolean(api):
    for value in ("yes", "true", 1, "1"):
        r = api.post("/ask", json={"question": "What did Peskov say?", "stream": value})
        assert r.status_code == 422, value
        r = api.post("/v1/chat/completions", json={"model": "rag", "stream": value,
                                                   "messages": [{"role": "user", "content": "What did Peskov say?"}]})
        assert r.status_code == 422 and r.json()["error"]["type"] == "invalid_request_error", value


def test_middleware_errors_under_v1_are_openai_error_objects(make_seed_pipeline, serve_pipeline, llm):
    pipeline = make_seed_pipeline(openai_base_url=llm.base_url, openai_model="stand-in", max_inflight=1,
                                  rate_limit=0, openai_max_retries=0)
    with serve_pipeline(pipeline) as client:
        big = {"model": "rag", "messages": [{"role": "user", "content": "x" * 70_000}]}
        r = client.post("/v1/chat/completions", json=big)
        assert r.status_code == 413 and r.json()["error"]["type"] == "invalid_request_error"
        r = client.post("/ask", json={"question": "x" * 70_000})
        assert r.status_code == 413 and "detail" in r.json()  # our own routes keep {"detail"}
        llm.mode, llm.delay = "slow", 3.0
        holder = threading.Thread(target=client.post, args=("/ask",),
                                  kwargs={"json": {"question": "What did Peskov say?", "generator": "openai"}})
        holder.start()
        deadline = time.monotonic() + 30
        while not llm.requests and time.monotonic() < deadline:  # the one slot is taken
            time.sleep(0.02)
        r = client.get("/v1/models")
        holder.join(30)
        assert r.status_code == 503 and r.headers["retry-after"] == "1"
        assert r.json()["error"]["type"] == "server_error" and "overloaded" in r.json()["error"]["message"]


def test_metric_labels_stay_bounded(make_seed_pipeline, serve_pipeline):
    # Methods the HTTP parser accepts but the API does not use (with h11 any token is accepted;
    # httptools refuses unknown ones with 400 before the app), and paths no route matches.
    methods = ["PROPFIND", "PURGE", "MKCOL", "LOCK", "BREW"]
    with serve_pipeline(make_seed_pipeline(rate_limit=0)) as client:
        for i, method in enumerate(methods):
            client.request(method, "/ask")
            client.get(f"/no/such/path/{i}")
        text = client.get("/metrics").text
    series = [line for line in text.splitlines() if line.startswith("rag_http_requests_total")]
    assert not any(m in s for s in series for m in methods) and not any("/no/such" in s for s in series), series
    assert any('method="other"' in s for s in series) and any('route="other"' in s for s in series), series


def recv_until_closed(sock: socket.socket, limit_s: float) -> tuple[bytes, float]:
    started = time.monotonic()
    sock.settimeout(limit_s)
    data = b""
    try:
        while chunk := sock.recv(4096):
            data += chunk
    except TimeoutError:
        raise AssertionError(f"connection still open after {limit_s}s (received {data!r})") from None
    return data, time.monotonic() - started


def test_slow_header_connections_are_closed(make_seed_pipeline, serve_pipeline):
    with serve_pipeline(make_seed_pipeline(header_timeout_s=1.0)) as client:
        address = ("127.0.0.1", client.base_url.port)
        # A partial request line, then nothing.
        with socket.create_connection(address) as sock:
            sock.sendall(b"GET /healthz HT")
            data, elapsed = recv_until_closed(sock, 10)
            assert data.startswith(b"HTTP/1.1 408") and elapsed < 5
        # Headers trickling in, a byte at a time: the allowance is for all of them, not per byte.
        # (epoll through `selectors`, not select(): in a long session a socket's descriptor can be
        # above select()'s limit of 1024.)
        with socket.create_connection(address) as sock, selectors.DefaultSelector() as readable:
            readable.register(sock, selectors.EVENT_READ)
            started = time.monotonic()
            closed = False
            for byte in b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 200:
                try:
                    sock.sendall(bytes([byte]))
                except OSError:
                    closed = True
                    break
                if readable.select(0.05):  # the server answered or closed
                    closed = True
                    break
            assert closed and time.monotonic() - started < 5
        # A connection that sends nothing at all.
        with socket.create_connection(address) as sock:
            _, elapsed = recv_until_closed(sock, 10)
            assert elapsed < 5
        # Keep-alive: a full request is answered; a second one left unfinished is closed.
        with socket.create_connection(address) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            sock.settimeout(10)
            first = sock.recv(4096)
            assert first.startswith(b"HTTP/1.1 200")
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 12")
            _, elapsed = recv_until_closed(sock, 10)
            assert elapsed < 5
        # Headers that arrive within the allowance, even in pieces, are served.
        with socket.create_connection(address) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHo")
            time.sleep(0.3)
            sock.sendall(b"st: 127.0.0.1\r\nConnection: close\r\n\r\n")
            data, _ = recv_until_closed(sock, 10)
            assert data.startswith(b"HTTP/1.1 200")


def protocol_classes() -> list:
    from uvicorn.protocols.http.h11_impl import H11Protocol

    classes = [H11Protocol]
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:  # httptools is optional; uvicorn uses it when installed
        return classes
    return [*classes, HttpToolsProtocol]


@pytest.mark.parametrize("base", protocol_classes(), ids=lambda c: c.__name__)
def test_header_timeout_with_either_http_parser(base):
    """The timeout wraps whichever parser uvicorn picks (h11, or httptools when it is installed)."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    from server.serving import uvicorn_config, with_header_timeout

    app = Starlette(routes=[Route("/", lambda _: PlainTextResponse("ok"))])
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn_config(app, http=with_header_timeout(base, 1.0), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)
    try:
        address = sock.getsockname()
        with socket.create_connection(address) as conn:
            conn.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            conn.settimeout(10)
            assert conn.recv(4096).startswith(b"HTTP/1.1 200")
            conn.sendall(b"GET / HT")  # the next request on the connection stalls
            data, elapsed = recv_until_closed(conn, 10)
            assert elapsed < 5
        with socket.create_connection(address) as conn:
            conn.sendall(b"GET / HT")
            data, elapsed = recv_until_closed(conn, 10)
            assert data.startswith(b"HTTP/1.1 408") and elapsed < 5
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
