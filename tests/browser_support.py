"""Helpers for the browser tests: Debian's Chromium driven by Playwright, a host page on another
origin, a server on a chosen port (to stop and restart the API under a loaded page), artifacts."""
from __future__ import annotations

import os
import socket
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import uvicorn
from starlette.applications import Starlette
from starlette.responses import HTMLResponse
from starlette.routing import Route

from support import REPO

CHROMIUM = os.environ.get("RAG_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]

# A hostile host page: its rules must not reach into the widget, and the widget's must not reach out.
HOSTILE_CSS = """
  * { color: rgb(255, 0, 0) !important; font-family: serif !important; }
  button, div, p, h2, textarea, section, blockquote { display: none !important; }
  .msg, .user, .panel { background: rgb(0, 255, 0) !important; }
"""


def artifacts_dir() -> Path:
    path = Path(os.environ.get("RAG_TEST_ARTIFACTS") or REPO / "test-artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


def host_page(api: str) -> str:
    """Someone else's page embedding the widget from the API host."""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>A page on another site</title><style>{HOSTILE_CSS}</style></head>
<body><h1>Another site</h1><span id="probe" class="msg user panel">page text</span>
<script src="{api}/widget.js" data-api="{api}" defer></script></body></html>"""


class HostSite:
    """A second loopback server (another origin) serving a page that embeds the widget; `api` is set later."""

    def __init__(self) -> None:
        self.api = ""

    def app(self) -> Starlette:
        async def page(_request):
            return HTMLResponse(host_page(self.api))

        return Starlette(routes=[Route("/", page)])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serve_on_port(app, port: int) -> Iterator[str]:
    """Like support.running_server, on a given port: to bring an API back where a page expects it."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=2))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


# Records, from inside the page, each piece of text the widget appends while an answer streams in.
RECORD_STREAM_JS = """() => {
  const shadow = document.querySelector('rag-chat-widget').shadowRoot;
  window.__pieces = [];
  new MutationObserver(records => {
    for (const r of records) {
      if (r.target.nodeType === Node.ELEMENT_NODE && r.target.hasAttribute('data-stream')) {
        for (const n of r.addedNodes) if (n.nodeType === Node.TEXT_NODE) window.__pieces.push(n.data);
      }
    }
  }).observe(shadow, {childList: true, subtree: true});
}"""
