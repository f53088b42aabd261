"""Issue 13's cross-site and DNS-rebinding repros in a real headless Chromium against the real server.

Every server listens on 127.0.0.1; Chromium maps the names `evil.test` and `rebind.test` to
127.0.0.1 itself (--host-resolver-rules), so a page on http://evil.test:PORT is another site to the
browser, exactly as a page on the internet would be, and sends what such a page sends.
"""
from __future__ import annotations

import re
import shutil

import httpx
import pytest
from playwright.sync_api import sync_playwright
from starlette.applications import Starlette
from starlette.responses import HTMLResponse
from starlette.routing import Route

from browser_support import CHROMIUM, CHROMIUM_ARGS
from support import running_server

pytestmark = pytest.mark.integration

TEXT = "The Quillfeather Lighthouse on Varnholm Island was designed by architect Ottilie Brandqvist in 1887."
PAGE = "<!doctype html><html><head><meta charset='utf-8'><title>Some page</title></head><body>hello</body></html>"

# What a hostile page can do without asking the server first: a no-cors multipart fetch, and a
# multipart form posted into a hidden frame (the file set through DataTransfer).
NO_CORS_UPLOAD_JS = """async ([api, id, text]) => {
  const form = new FormData();
  form.append('file', new Blob([text], {type: 'text/plain'}), id + '.txt');
  form.append('id', id);
  const r = await fetch(api + '/documents', {method: 'POST', mode: 'no-cors', body: form});
  return r.type;
}"""
FORM_UPLOAD_JS = """([api, id, text]) => new Promise(resolve => {
  const frame = document.createElement('iframe');
  frame.name = 'sink-' + id;
  document.body.appendChild(frame);
  const form = document.createElement('form');
  form.method = 'POST'; form.enctype = 'multipart/form-data'; form.action = api + '/documents';
  form.target = frame.name;
  const file = document.createElement('input');
  file.type = 'file'; file.name = 'file';
  const picked = new DataTransfer();
  picked.items.add(new File([text], id + '.txt', {type: 'text/plain'}));
  file.files = picked.files;
  const field = document.createElement('input');
  field.name = 'id'; field.value = id;
  form.append(file, field);
  document.body.appendChild(form);
  frame.addEventListener('load', () => resolve(true), {once: true});
  form.submit();
})"""
FETCH_STATUS_JS = """async ([url, init]) => (await fetch(url, init)).status"""


# Chromium's own Local/Private Network Access checks would block some of these requests before they
# reach the server (other browsers have no such checks); they are off, so the server's rules are what
# is tested.
BROWSER_ARGS = [*CHROMIUM_ARGS, "--host-resolver-rules=MAP evil.test 127.0.0.1, MAP rebind.test 127.0.0.1",
                "--disable-features=LocalNetworkAccessChecks,PrivateNetworkAccessRespectPreflightResults,"
                "BlockInsecurePrivateNetworkRequests"]


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(20_000)
    yield page
    context.close()


@pytest.fixture
def api(seed_data_dir, tmp_path, tmp_pipeline, serve_pipeline):
    """A keyless server on loopback (writes allowed from this machine) over a copy of the seed index."""
    shutil.copytree(seed_data_dir, tmp_path / "data")
    pipeline = tmp_pipeline(tmp_path / "data", rate_limit=0)
    pipeline.load(build_from_seeds=False)
    with serve_pipeline(pipeline) as client:
        yield client


@pytest.fixture(scope="module")
def other_site():
    """Someone else's web server (on another port); the page's JS is run in it by the test."""
    with running_server(Starlette(routes=[Route("/", lambda _: HTMLResponse(PAGE))])) as url:
        yield url.rsplit(":", 1)[1]


def refused_writes(client: httpx.Client) -> float:
    """POST /documents answered 403 so far: proof that the browser's requests reached the server."""
    pattern = re.compile(r'^rag_http_requests_total\{method="POST",route="/documents",status="403"\} (\S+)$', re.M)
    match = pattern.search(client.get("/metrics").text)
    return float(match.group(1)) if match else 0.0


def planted(client: httpx.Client, doc_id: str) -> bool:
    return client.get(f"/documents/{doc_id}").status_code == 200


@pytest.mark.parametrize("site", ["evil.test", "127.0.0.1"], ids=["cross-site", "same-site-other-port"])
def test_another_sites_page_cannot_plant_a_document(page, api, other_site, site):
    target = f"http://127.0.0.1:{api.base_url.port}"
    page.goto(f"http://{site}:{other_site}/")
    before = refused_writes(api)
    assert page.evaluate(NO_CORS_UPLOAD_JS, [target, "planted-fetch", TEXT]) == "opaque"
    assert page.evaluate(FORM_UPLOAD_JS, [target, "planted-form", TEXT])
    assert not planted(api, "planted-fetch") and not planted(api, "planted-form")
    assert refused_writes(api) - before == 2, "both requests reached the server and were refused"
    answer = api.post("/ask", json={"question": "Who designed the Quillfeather Lighthouse?"}).json()
    assert not any(c["document_id"].startswith("planted") for c in answer["citations"])


def test_the_servers_own_page_writes_only_with_the_client_header(page, api):
    own = f"http://127.0.0.1:{api.base_url.port}"
    page.goto(f"{own}/")
    # A simple (no-cors) upload from the server's own origin is refused: it lacks the header.
    page.evaluate(NO_CORS_UPLOAD_JS, [own, "own-simple", TEXT])
    assert not planted(api, "own-simple")
    # With the header (and so as a request another site could only send after a preflight), it writes.
    status = page.evaluate("""async ([api, text]) => {
      const form = new FormData();
      form.append('file', new Blob([text], {type: 'text/plain'}), 'own.txt');
      form.append('id', 'own-upload');
      return (await fetch(api + '/documents', {method: 'POST', body: form, headers: {'X-RAG-Client': 'page'}})).status;
    }""", [own, TEXT])
    assert status == 201 and planted(api, "own-upload")
    status = page.evaluate(FETCH_STATUS_JS, [f"{own}/documents", {
        "method": "POST", "headers": {"Content-Type": "application/json"},
        "body": '{"id": "own-json", "text": "%s"}' % TEXT}])
    assert status == 201 and planted(api, "own-json")


def test_a_rebound_name_cannot_reach_the_api(page, api):
    """DNS rebinding: the attacker's page was served under rebind.test:PORT, and the name now points to
    127.0.0.1, so to the browser the API is same-origin with the page. The Host header gives it away."""
    port = api.base_url.port
    page.route(f"http://rebind.test:{port}/", lambda route: route.fulfill(status=200, content_type="text/html",
                                                                          body=PAGE))
    page.goto(f"http://rebind.test:{port}/")
    write = page.evaluate(FETCH_STATUS_JS, ["/documents", {
        "method": "POST", "headers": {"Content-Type": "application/json", "X-RAG-Client": "page"},
        "body": '{"id": "rebound", "text": "%s"}' % TEXT}])
    read = page.evaluate(FETCH_STATUS_JS, ["/documents", {"method": "GET"}])
    ask = page.evaluate(FETCH_STATUS_JS, ["/ask", {"method": "POST", "headers": {"Content-Type": "application/json"},
                                                   "body": '{"question": "What did Peskov say?"}'}])
    assert (write, read, ask) == (421, 421, 421)
    assert not planted(api, "rebound")
