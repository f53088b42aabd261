"""The chat widget in a real headless Chromium (Debian's), against the real server on loopback:
streaming answers, citations, abstentions, errors, CORS, and markup in documents staying text."""
from __future__ import annotations

import pytest
from playwright.sync_api import expect

from rag.documents import make_document
from server.app import create_app

from browser_support import (PESKOV, RECORD_STREAM_JS, HostSite, Widget, artifacts_dir,
                             serve_on_port)
from support import OFF_TOPIC, PESKOV_SENTENCE_START, SEED_FILE, free_port, running_server

pytestmark = pytest.mark.integration  # headless Chromium and the real model



def test_streams_an_answer_and_shows_the_cited_sentence(page, serve_pipeline, seed_pipeline):
    shots = artifacts_dir()
    with serve_pipeline(seed_pipeline) as client:
        expected = client.post("/ask", json={"question": PESKOV}).json()
        page.goto(f"{client.base_url}/")
        expect(page.locator("h1")).to_have_text("Ask the documents")
        widget = Widget(page)
        # Nothing of the widget leaks into the page: its elements and styles live in a shadow root.
        assert page.evaluate("document.querySelector('rag-chat-widget').shadowRoot !== null")
        assert page.evaluate("document.querySelectorAll('[data-testid=rag-launcher], style').length") == 1
        widget.open()
        page.evaluate(RECORD_STREAM_JS)
        widget.ask(PESKOV)
        answer = widget.answered()

        # The answer came in as several streamed pieces that add up to the server's answer.
        pieces = page.evaluate("window.__pieces")
        assert len(pieces) >= 2, pieces
        assert "".join(pieces) == expected["answer"]
        expect(answer.locator("[data-testid=rag-answer-text]")).to_have_text(expected["answer"])
        expect(answer).to_contain_text("Peskov")
        expect(answer).not_to_have_attribute("data-abstained", "true")

        # Readable on a 360 px screen: the open panel fits the viewport.
        box = widget.panel.bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= 360 and box["height"] > 300
        page.screenshot(path=shots / "widget-answer-360.png")
        page.set_viewport_size({"width": 1100, "height": 760})
        page.screenshot(path=shots / "widget.png")  # a wider screen, for the docs
        page.set_viewport_size({"width": 360, "height": 740})

        # [1] opens the quoted sentence and its document; focus moves there, Escape goes back.
        first = expected["citations"][0]
        widget.citation(answer, 1).click()
        expect(widget.source).to_be_visible()
        quote = page.locator("[data-testid=rag-source-quote]")
        expect(quote).to_have_text(first["text"])
        expect(quote).to_contain_text(PESKOV_SENTENCE_START)
        expect(page.locator("[data-testid=rag-source-source]")).to_contain_text(SEED_FILE)
        expect(page.locator("[data-testid=rag-source-title]")).to_have_text(first["title"])
        expect(page.locator("[data-testid=rag-source-title]")).to_be_focused()
        page.screenshot(path=shots / "widget-source-360.png")
        page.keyboard.press("Escape")
        expect(widget.source).to_be_hidden()
        expect(widget.citation(answer, 1)).to_be_focused()

        # Multi-turn: the follow-up carries the conversation so far as `history`.
        with page.expect_request(lambda r: r.url.endswith("/ask") and r.method == "POST") as sent:
            widget.input.focus()
            widget.ask("And what did Lavrov say?")
        body = sent.value.post_data_json
        assert body["stream"] is True and body["question"] == "And what did Lavrov say?"
        assert body["history"] == [{"role": "user", "content": PESKOV},
                                   {"role": "assistant", "content": expected["answer"]}]
        expect(widget.answers).to_have_count(2)
        widget.answered()

        # Escape closes the panel and gives focus back to the launcher.
        widget.input.focus()
        page.keyboard.press("Escape")
        expect(widget.panel).to_be_hidden()
        expect(widget.launcher).to_be_focused()
        page.keyboard.press("Enter")
        expect(widget.panel).to_be_visible()
        expect(widget.answers).to_have_count(2)


def test_markup_in_documents_is_shown_as_text_never_run(page, serve_pipeline, tmp_pipeline):
    title = "<img src=x onerror=window.__pwned=1>"
    text = ("Zorblax reactor notes\n"
            "The zorblax reactor was designed by Professor Quimby <script>window.__pwned=1</script> "
            "with a cooling loop <img src=x onerror=\"window.__pwned=1\"> made of copper.\n")
    pipeline = tmp_pipeline()
    pipeline.ingest_documents([make_document(text, source="evil.html", title=title)])
    with serve_pipeline(pipeline) as client:
        page.goto(f"{client.base_url}/")
        widget = Widget(page)
        widget.open()
        widget.ask("Who designed the zorblax reactor?")
        answer = widget.answered()
        expect(answer).to_contain_text("<script>window.__pwned=1</script>")
        widget.citation(answer, 1).click()
        quote = page.locator("[data-testid=rag-source-quote]")
        expect(quote).to_contain_text("<script>window.__pwned=1</script>")
        expect(quote).to_contain_text('<img src=x onerror="window.__pwned=1">')
        expect(page.locator("[data-testid=rag-source-title]")).to_have_text(title)
        expect(page.locator("[data-testid=rag-source-source]")).to_have_text("evil.html")
        # Nothing was parsed as markup: no script or image elements, and nothing ran.
        assert page.locator("[data-testid=rag-widget] script, [data-testid=rag-widget] img").count() == 0
        assert page.evaluate("typeof window.__pwned") == "undefined"


def test_cross_origin_pages_need_to_be_listed_in_cors_origins(page, serve_pipeline, seed_pipeline,
                                                              make_seed_pipeline):
    site = HostSite()
    with running_server(site.app()) as origin:
        # Not listed: the browser refuses the request and the widget says it could not reach the service.
        with serve_pipeline(seed_pipeline) as client:
            site.api = str(client.base_url)
            page.goto(f"{origin}/")
            widget = Widget(page)
            widget.open()
            widget.ask(PESKOV)
            expect(widget.errors.last).to_contain_text("Could not reach")
            expect(widget.answers).to_have_count(0)

        # Listed: the same page gets answers.
        with serve_pipeline(make_seed_pipeline(cors_origins=[origin])) as client:
            site.api = str(client.base_url)
            page.goto(f"{origin}/")
            widget = Widget(page)
            widget.open()
            widget.ask(PESKOV)
            expect(widget.answered()).to_contain_text("Peskov")
            expect(widget.errors).to_have_count(0)

            # The hostile page's styles do not reach into the widget, nor the widget's out of it.
            expect(widget.panel).to_be_visible()
            style = page.evaluate("""() => {
              const css = (el, prop) => getComputedStyle(el)[prop];
              const shadow = document.querySelector('rag-chat-widget').shadowRoot;
              const user = shadow.querySelector('[data-testid=rag-msg-user]');
              const probe = document.getElementById('probe');
              return {userColor: css(user, 'color'), userBackground: css(user, 'backgroundColor'),
                      probeBackground: css(probe, 'backgroundColor'), probeRadius: css(probe, 'borderTopLeftRadius')};
            }""")
            assert style["userColor"] == "rgb(255, 255, 255)"
            assert style["userBackground"] == "rgb(31, 95, 191)"
            assert style["probeBackground"] == "rgb(0, 255, 0)" and style["probeRadius"] == "0px"


def test_abstention_looks_different_from_an_answer(page, serve_pipeline, seed_pipeline):
    with serve_pipeline(seed_pipeline) as client:
        page.goto(f"{client.base_url}/")
        widget = Widget(page)
        widget.open()
        widget.ask(PESKOV)
        widget.answered()
        widget.ask(OFF_TOPIC)
        expect(widget.answers).to_have_count(2)
        widget.answered()
        answered, abstained = widget.answers.nth(0), widget.answers.nth(1)
        expect(abstained).to_have_attribute("data-abstained", "true")
        expect(abstained.locator("[data-testid=rag-abstained-label]")).to_have_text("Not in the documents")
        expect(abstained.locator("[data-testid=rag-citation]")).to_have_count(0)
        expect(answered.locator("[data-testid=rag-abstained-label]")).to_have_count(0)
        looks = "el => [getComputedStyle(el).fontStyle, getComputedStyle(el).borderTopStyle]"
        assert answered.evaluate(looks) == ["normal", "none"]
        assert abstained.evaluate(looks) == ["italic", "dashed"]


def test_errors_are_shown_and_the_panel_keeps_working(page, serve_pipeline, make_seed_pipeline, llm):
    # Network error: the API goes away under a loaded page, then comes back on the same port.
    pipeline = make_seed_pipeline()
    port = free_port()
    with serve_on_port(create_app(pipeline, load_in_background=False), port) as base_url:
        page.goto(f"{base_url}/")
    widget = Widget(page)
    widget.open()
    widget.ask(PESKOV)
    expect(widget.errors).to_have_count(1)
    expect(widget.errors.last).to_contain_text("Could not reach")
    expect(widget.send).to_be_enabled()
    with serve_on_port(create_app(pipeline, load_in_background=False), port):
        widget.ask(PESKOV)
        expect(widget.answered()).to_contain_text("Peskov")
        expect(widget.errors).to_have_count(1)
        with page.expect_request(lambda r: r.url.endswith("/ask")) as sent:
            widget.ask("And what did Lavrov say?")
        # The failed turn is not part of the conversation sent back.
        assert [m["role"] for m in sent.value.post_data_json["history"]] == ["user", "assistant"]
        widget.answered()

    # HTTP error before the stream (413: question too long), then an `error` event mid-stream.
    failing = make_seed_pipeline(max_question_chars=60, generator="openai", openai_base_url=llm.base_url,
                                 openai_fallback=False)
    llm.mode = "error"
    with serve_pipeline(failing) as client:
        page.goto(f"{client.base_url}/")
        widget = Widget(page)
        widget.open()
        widget.ask("What did Peskov say about the Anglo-French plan to send troops to Ukraine?")
        expect(widget.errors.last).to_contain_text("413")
        with page.expect_response(lambda r: r.url.endswith("/ask")) as got:
            widget.ask(PESKOV)
        assert got.value.status == 200 and got.value.headers["content-type"].startswith("text/event-stream")
        expect(widget.errors).to_have_count(2)
        expect(widget.errors.last).to_contain_text("500")  # the `error` event's detail, after `passages`
        expect(widget.input).to_be_enabled()
        expect(widget.send).to_be_enabled()
