"""Fetching pages for ingest, against a real site on loopback: the private-address rule (on and off),
redirect bounds with every hop checked, size caps, content types, and 304s for unchanged pages."""
from __future__ import annotations

import ipaddress

import pytest

from formats_support import FURNITURE, PageSite
from rag.fetch import FetchError, FetchOptions, FetchRefusedError, _allowed, fetch, load_url
from rag.loaders import DocumentTooLargeError, UnsupportedFormatError

pytestmark = pytest.mark.integration  # a uvicorn server on loopback

OPEN = FetchOptions(allow_private=True, timeout_s=10)


@pytest.fixture(scope="module")
def site():
    s = PageSite()
    with s.serve() as base:
        s.base = base
        yield s


@pytest.mark.parametrize("address, allowed", [
    ("8.8.8.8", True), ("2001:4860:4860::8888", True), ("127.0.0.1", False), ("127.8.9.1", False),
    ("10.1.2.3", False), ("172.16.0.1", False), ("192.168.1.1", False), ("169.254.169.254", False),
    ("100.64.0.1", False), ("0.0.0.0", False), ("224.0.0.1", False), ("240.0.0.1", False), ("::1", False),
    ("fe80::1", False), ("fc00::1", False), ("::ffff:127.0.0.1", False), ("::ffff:8.8.8.8", True), ("::", False),
])
def test_address_rule(address, allowed):
    assert _allowed(ipaddress.ip_address(address)) is allowed


def test_loopback_is_refused_unless_the_setting_allows_it(site):
    port = site.base.rsplit(":", 1)[1]
    for url in (f"{site.base}/menu.html", f"http://localhost:{port}/menu.html", f"http://[::1]:{port}/x",
                f"http://0x7f000001:{port}/menu.html"):
        with pytest.raises(FetchRefusedError, match="RAG_FETCH_ALLOW_PRIVATE"):
            fetch(url, FetchOptions())
    before = len(site.requests)
    with pytest.raises(FetchRefusedError):
        fetch(f"{site.base}/menu.html")
    assert len(site.requests) == before  # refused before any connection
    assert fetch(f"{site.base}/menu.html", OPEN).status == 200


@pytest.mark.parametrize("url, message", [
    ("ftp://example.com/a.txt", "only http and https"), ("file:///etc/passwd", "only http and https"),
    ("http://user:secret@example.com/", "credentials"), ("http:///nohost", "no host"),
    ("http://example.com/" + "a" * 3000, "2048"),
])
def test_bad_urls_are_refused(url, message):
    with pytest.raises(FetchRefusedError, match=message):
        fetch(url, OPEN)


def test_a_page_is_fetched_with_its_host_header_and_parsed(site):
    doc, unchanged = load_url(f"{site.base}/menu.html", options=OPEN)
    assert not unchanged and doc.source == f"{site.base}/menu.html"
    assert doc.metadata["origin"] == doc.source and doc.metadata["http_etag"].startswith('"')
    assert "Croissant | 2.50 EUR" in doc.text.splitlines()
    assert not any(f in doc.text for f in FURNITURE)
    path, headers = site.requests[-1]
    assert headers["host"] == site.base.split("//")[1]


def test_content_types_choose_the_parser(site):
    pdf, _ = load_url(f"{site.base}/report.pdf", options=OPEN)
    assert pdf.metadata["format"] == "pdf" and len(pdf.metadata["pages"]) == 2
    plain, _ = load_url(f"{site.base}/plain", options=OPEN)
    assert plain.metadata["format"] == "text" and "ferry" in plain.text
    with pytest.raises(UnsupportedFormatError, match="image/png"):
        load_url(f"{site.base}/image.png", options=OPEN)


def test_sizes_are_capped_while_streaming(site):
    small = FetchOptions(allow_private=True, max_bytes=1_000_000)
    with pytest.raises(DocumentTooLargeError, match="limit is 1000000"):
        fetch(f"{site.base}/big", small)
    with pytest.raises(DocumentTooLargeError, match="download was stopped"):
        fetch(f"{site.base}/stream", small)


def test_redirects_are_bounded_and_each_hop_is_checked(site):
    assert fetch(f"{site.base}/hop/3", OPEN).url == f"{site.base}/menu.html"
    with pytest.raises(FetchError, match="more than 5 redirects"):
        fetch(f"{site.base}/loop", OPEN)
    with pytest.raises(FetchRefusedError, match="only http and https"):
        fetch(f"{site.base}/to?url=file:///etc/passwd", OPEN)


def test_a_redirect_to_a_private_address_is_refused(site, monkeypatch):
    """The site stands in for a public one (127.0.0.1 allowed, the real rule for anything else): its
    redirect to another loopback address is refused at that hop, with nothing sent there."""
    import rag.fetch

    real = rag.fetch._allowed
    monkeypatch.setattr(rag.fetch, "_allowed", lambda ip: str(ip) == "127.0.0.1" or real(ip))
    port = site.base.rsplit(":", 1)[1]
    assert fetch(f"{site.base}/hop/1", FetchOptions()).status == 200
    with pytest.raises(FetchRefusedError, match="127.0.0.2"):
        fetch(f"{site.base}/to?url=http://127.0.0.2:{port}/menu.html", FetchOptions())
    with pytest.raises(FetchRefusedError, match="169.254.169.254"):
        fetch(f"{site.base}/to?url=http://169.254.169.254/latest/meta-data/", FetchOptions())


def test_an_unchanged_page_costs_one_304(site):
    first, _ = load_url(f"{site.base}/menu.html", options=OPEN)
    sent = site.bodies_sent
    again, unchanged = load_url(f"{site.base}/menu.html", options=OPEN, known=lambda _id: first)
    assert unchanged and again is first and site.bodies_sent == sent
    assert site.requests[-1][1]["if-none-match"] == first.metadata["http_etag"]
    site.menu = site.menu.replace("2.50 EUR", "2.70 EUR")
    try:
        changed, unchanged = load_url(f"{site.base}/menu.html", options=OPEN, known=lambda _id: first)
    finally:
        site.menu = site.menu.replace("2.70 EUR", "2.50 EUR")
    assert not unchanged and "Croissant | 2.70 EUR" in changed.text
