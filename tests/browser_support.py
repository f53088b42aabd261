"""Helpers for the browser tests: Debian's Chromium driven by Playwright, a host page on another
origin, a server on a chosen port (to stop and restart the API under a loaded page), artifacts."""
from __future__ import annotations

import os
from pathlib import Path

from playwright.sync_api import Page, expect
from starlette.applications import Starlette
from starlette.responses import HTMLResponse
from starlette.routing import Route

from support import REPO, running_server

PESKOV = "What did Peskov say?"
expect.set_options(timeout=20_000)  # waiting, not timing: generous for a cold, slow CI machine
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


def serve_on_port(app, port: int):
    """support.running_server on a given port: to bring an API back where a page expects it."""
    return running_server(app, port)


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


class Widget:
    """The widget on a page, through its data-testid hooks (Playwright's CSS pierces the open shadow root)."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.launcher = page.locator("[data-testid=rag-launcher]")
        self.panel = page.locator("[data-testid=rag-panel]")
        self.input = page.locator("[data-testid=rag-input]")
        self.send = page.locator("[data-testid=rag-send]")
        self.answers = page.locator("[data-testid=rag-answer]")
        self.errors = page.locator("[data-testid=rag-error]")
        self.source = page.locator("[data-testid=rag-source]")

    def open(self) -> None:
        self.launcher.click()
        expect(self.panel).to_be_visible()
        expect(self.input).to_be_focused()

    def ask(self, question: str) -> None:
        self.input.fill(question)
        self.input.press("Enter")
        expect(self.page.locator("[data-testid=rag-msg-user]").last).to_contain_text(question)

    def answered(self):
        """The last answer, once complete."""
        answer = self.answers.last
        expect(answer).to_have_attribute("data-state", "done")
        return answer

    def citation(self, answer, n: int):
        return answer.locator(f"[data-testid=rag-answer-text] [data-testid=rag-citation][data-n='{n}']")
