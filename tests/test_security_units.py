"""Fast tier: the security rules as plain functions (JSON body checks, origin policy, Host parsing,
forwarded addresses, settings). The same rules over a real server: test_security_http.py."""
from __future__ import annotations

import json

import pytest
from starlette.datastructures import Headers

from rag.config import Settings, host_is_loopback
from server.hosts import HostPolicy, parse_host
from server.jsonbounds import MAX_DEPTH, JsonBodyError, check_json_body, is_json_content_type
from server.observability import method_label, route_label
from server.origin import keyless_write_refusal
from server.proxies import forwarded_client, parse_networks


# -- JSON bodies ---------------------------------------------------------------------------
def refusal(body: bytes) -> str | None:
    try:
        check_json_body(body)
    except JsonBodyError as exc:
        return str(exc)
    return None


@pytest.mark.parametrize("body", [
    b'{"question": "x"}', b"[" * MAX_DEPTH + b"]" * MAX_DEPTH, b"1", b"",
    b'{"text": "' + b"[" * 500 + b'"}',  # brackets inside strings are text
    b'{"text": "\\"' + b"{" * 500 + b'"}',  # ... also after an escaped quote
    json.dumps({"emoji": "\U0001F600"}).encode(),  # a surrogate pair, escaped: one character
    b'{"path": "C:\\\\ud800"}',  # an escaped backslash, then the letters ud800
])
def test_json_bodies_that_pass(body):
    assert refusal(body) is None


@pytest.mark.parametrize("body, words", [
    (b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1), "levels deep"),
    (b'{"a":' * 5000 + b"1" + b"}" * 5000, "levels deep"),
    (b'{"a": "x\\\\"}' + b"[" * 40, "levels deep"),  # the string ends at the escaped backslash's quote
    (json.dumps({"metadata": {"k": "\ud800"}}).encode(), "lone surrogate"),
    (b'["\\udc00"]', "lone surrogate"),
    (b'["\\ud83d\\\\\\ude00"]', "lone surrogate"),  # high, an escaped backslash, low: two lone halves
    (b'["\\\\\\ud800"]', "lone surrogate"),  # escaped backslash, then a real escape
    (b'["\xed\xa0\x80"]', "UTF-8"),  # a surrogate encoded as bytes (CESU-8)
    ('["x"]'.encode("utf-16"), "UTF-8"),
])
def test_json_bodies_refused_before_parsing(body, words):
    assert words in (refusal(body) or "")


def test_json_scan_of_a_large_body():
    """10 MB of shallow pairs pass; the same size one level too deep at the very end is refused."""
    body = b"[" + b"[1]," * 2_500_000 + b"[1]]"
    assert refusal(body) is None
    deep_tail = b"[" + b"[1]," * 2_500_000 + b"[" * MAX_DEPTH + b"]" * MAX_DEPTH + b"]"
    assert "levels deep" in (refusal(deep_tail) or "")


@pytest.mark.parametrize("ctype, expected", [(None, True), ("application/json", True),
                                             ("application/json; charset=utf-8", True),
                                             ("application/merge-patch+json", True), ("multipart/form-data", False),
                                             ("text/plain", False)])
def test_json_content_types(ctype, expected):
    assert is_json_content_type(ctype) is expected


# -- keyless writes from browsers ----------------------------------------------------------
def write_refusal(headers: dict, method: str = "POST", listed=()) -> str | None:
    return keyless_write_refusal(Headers(headers), method, "http", list(listed))


HOST = {"host": "127.0.0.1:8000"}


def test_requests_without_browser_headers_pass():
    assert write_refusal({**HOST, "content-type": "multipart/form-data; boundary=x"}) is None


@pytest.mark.parametrize("headers", [
    {"origin": "http://evil.example", "content-type": "application/json"},
    {"sec-fetch-site": "cross-site", "origin": "http://127.0.0.1:8000", "content-type": "application/json"},
    {"origin": "null", "content-type": "application/json"},
    {"origin": "http://127.0.0.1:9999", "sec-fetch-site": "same-site", "content-type": "application/json"},
    {"origin": "http://localhost:8000", "content-type": "application/json"},  # another origin, same machine
    {"sec-fetch-site": "same-site", "content-type": "application/json"},  # no Origin to say which site
    {"origin": "http://127.0.0.1:8000", "content-type": "multipart/form-data; boundary=x"},  # no custom header
    {"origin": "http://127.0.0.1:8000", "content-type": "text/plain"},
    {"origin": "http://127.0.0.1:8000"},  # a Blob body without a type is a simple request too
])
def test_browser_writes_refused(headers):
    assert write_refusal({**HOST, **headers}) is not None


@pytest.mark.parametrize("headers, method, listed", [
    ({"origin": "http://127.0.0.1:8000", "content-type": "application/json"}, "POST", ()),
    ({"origin": "http://127.0.0.1:8000", "content-type": "multipart/form-data; b=x", "x-rag-client": "1"}, "POST", ()),
    ({"origin": "http://127.0.0.1:8000", "sec-fetch-site": "same-origin"}, "DELETE", ()),
    ({"origin": "http://127.0.0.1:9999", "sec-fetch-site": "same-site", "content-type": "application/json"}, "PUT",
     ("http://127.0.0.1:9999",)),
])
def test_browser_writes_accepted(headers, method, listed):
    assert write_refusal({**HOST, **headers}, method, listed) is None


def test_a_wildcard_cors_origin_never_opens_keyless_writes():
    assert write_refusal({**HOST, "origin": "http://127.0.0.1:9999", "content-type": "application/json"},
                         listed=("*",)) is not None


def test_cross_site_is_refused_even_from_a_listed_origin():
    assert write_refusal({**HOST, "origin": "http://evil.example", "sec-fetch-site": "cross-site",
                          "content-type": "application/json"}, listed=("http://evil.example",)) is not None


def test_same_origin_compares_default_ports_and_ipv6():
    assert write_refusal({"host": "example.test", "origin": "http://example.test:80",
                          "content-type": "application/json"}) is None
    assert write_refusal({"host": "[::1]:8000", "origin": "http://[0:0::1]:8000",
                          "content-type": "application/json"}) is None


# -- Host header ---------------------------------------------------------------------------
@pytest.mark.parametrize("header, host", [("example.com", "example.com"), ("Example.COM.:8000", "example.com"),
                                          ("[::1]:8000", "::1"), ("[0:0::1]", "::1"), ("127.0.0.1:80", "127.0.0.1"),
                                          ("a b", None), ("x@y", None), ("[zz]:1", None), ("h:port", None)])
def test_parse_host(header, host):
    assert parse_host(header) == host


def test_host_policy():
    loopback = HostPolicy([], "127.0.0.1")
    assert all(loopback.allows(h) for h in ("localhost", "127.0.0.1", "::1", "10.1.2.3"))
    assert not loopback.allows("evil.example") and not loopback.allows("127.0.0.1.nip.io")
    listed = HostPolicy(["api.example.com", "*.corp.example"], "0.0.0.0")
    assert listed.allows("api.example.com") and listed.allows("a.b.corp.example")
    assert not listed.allows("corp.example") and not listed.allows("evilcorp.example")
    assert HostPolicy(["*"], "0.0.0.0").allows("anything.example")


# -- forwarded addresses -------------------------------------------------------------------
def test_forwarded_for_is_ignored_unless_the_peer_is_a_trusted_proxy():
    assert forwarded_client("127.0.0.1", ["203.0.113.5"], ()) == "127.0.0.1"
    proxies = parse_networks(["10.0.0.0/8"])
    assert forwarded_client("127.0.0.1", ["203.0.113.5"], proxies) == "127.0.0.1"
    assert forwarded_client("10.0.0.2", ["203.0.113.5"], proxies) == "203.0.113.5"
    # The client's own entries come first; the right-most untrusted hop is the client.
    assert forwarded_client("10.0.0.2", ["1.1.1.1, 198.51.100.7", "10.0.0.9"], proxies) == "198.51.100.7"
    assert forwarded_client("10.0.0.2", ["garbage"], proxies) == "10.0.0.2"
    assert forwarded_client("10.0.0.2", ["[2001:db8::1]:443"], proxies) == "2001:db8::1"


# -- settings ------------------------------------------------------------------------------
@pytest.mark.parametrize("host, loopback", [("127.0.0.1", True), ("127.5.6.7", True), ("::1", True),
                                            ("localhost", True), ("0.0.0.0", False), ("::", False), ("", False),
                                            ("192.0.2.1", False), ("127.evil.invalid", False),
                                            ("127.0.0.1.nip.io.invalid", False)])
def test_loopback_only_resolves_the_bind_host(host, loopback):
    assert host_is_loopback(host) is loopback
    assert Settings(host=host).loopback_only is loopback


def test_protect_reads_without_keys_is_a_settings_error():
    with pytest.raises(ValueError, match="RAG_PROTECT_READS=true needs at least one key in RAG_API_KEYS"):
        Settings(protect_reads=True)
    assert Settings(protect_reads=True, api_keys=["k"]).protect_reads


def test_proxy_and_host_settings_are_checked(monkeypatch):
    monkeypatch.setenv("RAG_TRUSTED_PROXIES", "10.0.0.0/8, ::1")
    monkeypatch.setenv("RAG_ALLOWED_HOSTS", "API.example.com,*.corp.example")
    s = Settings()
    assert s.trusted_proxies == ["10.0.0.0/8", "::1"] and s.allowed_hosts == ["api.example.com", "*.corp.example"]
    with pytest.raises(ValueError, match="not an IP address or CIDR"):
        Settings(trusted_proxies=["proxy.example"])
    with pytest.raises(ValueError, match="not a host name"):
        Settings(allowed_hosts=["https://api.example.com"])
    with pytest.raises(ValueError, match="not a host name"):
        Settings(allowed_hosts=["api.example.com:8000"])


# -- metric labels -------------------------------------------------------------------------
def test_metric_labels_come_from_a_fixed_set():
    assert method_label("GET") == "GET" and method_label("BREW") == "other" and method_label("get") == "other"
    assert route_label({"path": "/x" * 50}) == "other"
    assert route_label({"path": "/widget.js"}) == "static"
