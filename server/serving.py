"""How uvicorn runs the app: `rag serve` and the tests' servers share this configuration.

- Proxy headers: uvicorn's own handling is off. By default it believes X-Forwarded-For from
  127.0.0.1, so any local process could name itself another client in the log and the rate limit;
  here server/proxies.py decides, from RAG_TRUSTED_PROXIES.
- Header timeout: uvicorn closes idle keep-alive connections, but a connection that sends part of a
  request line and then nothing is held open for ever (one socket and one file descriptor each, so
  a few thousand such connections exhaust the process). The protocol below closes, with 408, any
  connection whose request headers are not complete within RAG_HEADER_TIMEOUT_S of its first byte
  (or of its opening, for a connection that sends nothing). Header size stays bounded by h11's
  16 KiB limit on an incomplete event.
"""
from __future__ import annotations

import asyncio
from typing import Any

import uvicorn
from uvicorn.protocols.http.auto import AutoHTTPProtocol

from rag.config import Settings

_TIMEOUT_RESPONSE = (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
                     b"connection: close\r\ncontent-length: 36\r\n\r\nrequest headers not received in time")


def with_header_timeout(base: type[asyncio.Protocol], timeout_s: float) -> type[asyncio.Protocol]:
    """A subclass of uvicorn's HTTP protocol class (h11 or httptools: both keep the request being
    served in `self.cycle`, set once its headers are parsed) that bounds the time to send headers."""

    class HeaderTimeoutProtocol(base):  # type: ignore[valid-type, misc]
        _header_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            if self._waiting_for_headers():
                self._arm()  # a new request starts: its headers get the full allowance from here
            before = self.cycle
            super().data_received(data)
            if self.cycle is not before:  # headers parsed: the app's own limits take over
                self._disarm()

        def connection_lost(self, exc) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _waiting_for_headers(self) -> bool:
            return self.cycle is None or self.cycle.response_complete

        def _arm(self) -> None:
            if self._header_timer is None:
                self._header_timer = self.loop.call_later(timeout_s, self._headers_timed_out)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _headers_timed_out(self) -> None:
            self._header_timer = None
            if self._waiting_for_headers() and not self.transport.is_closing():
                self.transport.write(_TIMEOUT_RESPONSE)
                self.transport.close()

    HeaderTimeoutProtocol.__name__ = f"HeaderTimeout{base.__name__}"
    return HeaderTimeoutProtocol


def uvicorn_options(settings: Settings, **overrides: Any) -> dict[str, Any]:
    """Keyword arguments for uvicorn.run / uvicorn.Config."""
    return {"host": settings.host, "port": settings.port, "proxy_headers": False,
            "http": with_header_timeout(AutoHTTPProtocol, settings.header_timeout_s), "server_header": False,
            **overrides}


def uvicorn_config(app, settings: Settings | None = None, **overrides: Any) -> uvicorn.Config:
    """uvicorn.Config for `app`; settings default to the app's pipeline's (or the environment's)."""
    if settings is None:
        pipeline = getattr(getattr(app, "state", None), "pipeline", None)
        settings = pipeline.settings if pipeline is not None else Settings()
    return uvicorn.Config(app, **uvicorn_options(settings, **overrides))
