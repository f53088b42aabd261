"""`/docs` and `/redoc` render in headless Chromium with every non-loopback request blocked: their
assets come from this server, not a CDN; Swagger UI offers "Authorize" for the bearer key."""
from __future__ import annotations

from urllib.parse import urlparse

import pytest
from playwright.sync_api import expect



pytestmark = pytest.mark.integration


def test_api_docs_render_with_no_network(browser, api):
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    blocked: list[str] = []

    def only_loopback(route):
        host = urlparse(route.request.url).hostname
        if host in ("127.0.0.1", "localhost"):
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort("internetdisconnected")

    context.route("**/*", only_loopback)
    page = context.new_page()
    try:
        page.goto(f"{api.base_url}/docs")
        expect(page.locator(".swagger-ui .info .title")).to_contain_text("RAG question answering", timeout=20_000)
        expect(page.locator(".opblock-summary-path", has_text="/ask").first).to_be_visible()
        page.locator("button.authorize").click()
        expect(page.locator(".auth-container")).to_contain_text("bearerAuth")
        expect(page.locator(".auth-container input")).to_be_visible()

        page.goto(f"{api.base_url}/redoc")
        expect(page.locator("h1").first).to_contain_text("RAG question answering", timeout=20_000)
        expect(page.get_by_text("bearerAuth").first).to_be_attached()
        assert blocked == [], f"the docs tried to reach the network: {blocked}"
    finally:
        context.close()
