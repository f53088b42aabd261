"""Fetching web pages for ingest: http(s) only, bounded in time, size and redirects, and never to a
private, loopback, link-local, multicast or reserved address unless settings allow it.

The host name is resolved once, every address it resolves to is checked, and the connection goes to
the checked address (the URL's host is replaced by the IP; the Host header and TLS server name keep
the original name), so a DNS answer that changes between check and connect (rebinding) cannot
redirect the request. Each redirect hop is checked the same way."""
from __future__ import annotations

import ipaddress
import socket
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable
from urllib.parse import urljoin

import httpx

from .loaders import CONTENT_TYPES, DocumentTooLargeError, Limits, LoaderError, UnsupportedFormatError, format_for

if TYPE_CHECKING:
    from .documents import Document

MAX_URL_CHARS = 2048


class FetchError(LoaderError):
    """The page could not be fetched (network error, HTTP error status, timeout)."""

    kind = "fetch failed"


class FetchRefusedError(FetchError):
    """The URL is not allowed: not http(s), credentials in it, or a non-public address."""


@dataclass(frozen=True)
class FetchOptions:
    allow_private: bool = False  # RAG_FETCH_ALLOW_PRIVATE: loopback/private addresses allowed (tests, intranets)
    timeout_s: float = 20.0  # the whole fetch, redirects included
    connect_timeout_s: float = 5.0
    max_bytes: int = 10 * 1024 * 1024  # the body after content decoding; streamed and cut off past it
    max_redirects: int = 5
    user_agent: str = "rag-service/0.1 (document ingest)"


@dataclass
class Fetched:
    url: str  # the final URL, after redirects
    status: int  # 200, or 304 when the validators sent still match
    content_type: str | None = None
    charset: str | None = None
    data: bytes = b""
    etag: str | None = None
    last_modified: str | None = None


def _check_url(url: str) -> httpx.URL:
    if len(url) > MAX_URL_CHARS:
        raise FetchRefusedError(f"URL is over {MAX_URL_CHARS} characters")
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError, TypeError) as exc:
        raise FetchRefusedError(f"{url[:200]}: not a valid URL ({exc})") from None
    if parsed.scheme not in ("http", "https"):
        raise FetchRefusedError(f"{url[:200]}: only http and https URLs can be fetched")
    if not parsed.host:
        raise FetchRefusedError(f"{url[:200]}: the URL has no host")
    if parsed.userinfo:
        raise FetchRefusedError(f"{url[:200]}: URLs with credentials are not fetched")
    return parsed


def _allowed(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not (ip.is_multicast or ip.is_reserved or ip.is_loopback or ip.is_link_local
                                 or ip.is_private or ip.is_unspecified)


def resolve(host: str, port: int, allow_private: bool) -> str:
    """The address to connect to: every address `host` resolves to must be allowed."""
    try:
        addresses = [ipaddress.ip_address(host.strip("[]"))]
    except ValueError:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError, OSError) as exc:
            raise FetchError(f"{host}: cannot resolve the host name ({exc})") from None
        addresses = [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]
    if not addresses:
        raise FetchError(f"{host}: the host name has no address")
    if not allow_private:
        bad = [str(a) for a in addresses if not _allowed(a)]
        if bad:
            raise FetchRefusedError(f"{host}: resolves to a private, loopback, link-local or reserved address "
                                    f"({bad[0]}); set RAG_FETCH_ALLOW_PRIVATE=true to allow it")
    return str(addresses[0])


def fetch(url: str, options: FetchOptions = FetchOptions(), *, etag: str | None = None,
          last_modified: str | None = None) -> Fetched:
    """GET a page, following up to `max_redirects` redirects, each hop checked anew."""
    deadline = time.monotonic() + options.timeout_s
    timeout = httpx.Timeout(options.timeout_s, connect=options.connect_timeout_s)
    current = _check_url(url)
    # No proxies from the environment (the address check must see the real peer); no kept-alive
    # connections, so a redirect to another host name on the same address gets its own TLS check.
    with httpx.Client(trust_env=False, follow_redirects=False, timeout=timeout,
                      limits=httpx.Limits(max_keepalive_connections=0)) as client:
        for _hop in range(options.max_redirects + 1):
            ip = resolve(current.host, current.port or (443 if current.scheme == "https" else 80),
                         options.allow_private)
            headers = {"Host": current.netloc.decode("ascii"), "User-Agent": options.user_agent,
                       "Accept": ", ".join(CONTENT_TYPES) + ";q=0.9, */*;q=0.1"}
            if etag:
                headers["If-None-Match"] = etag
            if last_modified:
                headers["If-Modified-Since"] = last_modified
            extensions = {"sni_hostname": current.host} if current.scheme == "https" else {}
            try:
                with client.stream("GET", current.copy_with(host=ip), headers=headers,
                                   extensions=extensions) as response:
                    if response.status_code in (301, 302, 303, 307, 308):
                        location = response.headers.get("location")
                        if not location:
                            raise FetchError(f"{current}: redirect without a Location")
                        current = _check_url(urljoin(str(current), location))
                        continue
                    return _read(response, str(current), options, deadline)
            except httpx.TimeoutException:
                raise FetchError(f"{current}: timed out") from None
            except httpx.HTTPError as exc:
                raise FetchError(f"{current}: {type(exc).__name__}: {exc}") from None
        raise FetchError(f"{url[:200]}: more than {options.max_redirects} redirects")


def _read(response: httpx.Response, url: str, options: FetchOptions, deadline: float) -> Fetched:
    validators = {"etag": response.headers.get("etag"), "last_modified": response.headers.get("last-modified")}
    if response.status_code == 304:
        return Fetched(url=url, status=304, **validators)
    if response.status_code != 200:
        raise FetchError(f"{url}: the server answered HTTP {response.status_code}")
    ctype = response.headers.get("content-type", "")
    mime = ctype.split(";")[0].strip().lower()
    if mime and mime not in CONTENT_TYPES and mime != "application/octet-stream":
        raise UnsupportedFormatError(f"{url}: unsupported content type {mime}; supported: "
                                     f"{', '.join(sorted(CONTENT_TYPES))}")
    declared = response.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > options.max_bytes:
        raise DocumentTooLargeError(f"{url}: {declared} bytes; the limit is {options.max_bytes}")
    body = bytearray()
    for piece in response.iter_bytes():
        body += piece
        if len(body) > options.max_bytes:
            raise DocumentTooLargeError(f"{url}: over {options.max_bytes} bytes; the download was stopped")
        if time.monotonic() > deadline:
            raise FetchError(f"{url}: took longer than {options.timeout_s:g} s")
    return Fetched(url=url, status=200, content_type=mime or None, charset=response.charset_encoding,
                   data=bytes(body), **validators)


def load_url(url: str, *, options: FetchOptions, limits: Limits | None = None,
             known: Callable[[str], "Document | None"] | None = None) -> tuple["Document", bool]:
    """A web page as a document (source and `metadata.origin`: the URL as given). Returns (document,
    unchanged): with a stored copy whose validators still match, the server answers 304 and the stored
    document comes back as it is (nothing downloaded, parsed or embedded)."""
    from .documents import document_id_for, make_document
    from .loaders import load_bytes

    source = str(_check_url(url))
    previous = known(document_id_for(source)) if known is not None else None
    meta = previous.metadata if previous is not None else {}
    fetched = fetch(source, options, etag=meta.get("http_etag"), last_modified=meta.get("http_last_modified"))
    if fetched.status == 304 and previous is not None:
        return previous, True
    kind = format_for(fetched.url.split("?")[0].split("#")[0], fetched.content_type
                      if fetched.content_type != "application/octet-stream" else None)
    loaded = load_bytes(fetched.data, source, kind=kind, charset=fetched.charset,
                        limits=limits or Limits(max_bytes=options.max_bytes))
    metadata = {**loaded.metadata, "origin": source, "url": fetched.url}
    if fetched.content_type:
        metadata["content_type"] = fetched.content_type
    if fetched.etag:
        metadata["http_etag"] = fetched.etag
    if fetched.last_modified:
        metadata["http_last_modified"] = fetched.last_modified
    return make_document(loaded.text, source=source, title=loaded.title, metadata=metadata), False
