"""The widget's conversation features in headless Chromium against the real server: retry after an
outage, the conversation kept across a reload (and cleared by "New"), the quote shown in its passage and
in the whole document, feedback reaching the server, copy, theming and dark mode, and a long CJK
conversation staying under the request size limit."""
from __future__ import annotations

import json

import httpx
import pytest
from playwright.sync_api import expect
from starlette.applications import Starlette
from starlette.responses import HTMLResponse
from starlette.routing import Route

from eval.datasets import load_jsonl
from server.app import create_app

from browser_support import PESKOV, Widget, serve_on_port
from support import PESKOV_SENTENCE_START, free_port, running_server

pytestmark = pytest.mark.integration


def test_retry_after_a_server_outage_keeps_the_question(page, make_seed_pipeline):
    pipeline = make_seed_pipeline()
    port = free_port()
    with serve_on_port(create_app(pipeline, load_in_background=False), port) as base_url:
        page.goto(f"{base_url}/")
    widget = Widget(page)
    widget.open()
    widget.ask(PESKOV)
    error = widget.errors.last
    expect(error).to_contain_text("Could not reach")
    retry = error.locator("[data-testid=rag-retry]")
    expect(retry).to_be_visible()
    with serve_on_port(create_app(pipeline, load_in_background=False), port):
        with page.expect_request(lambda r: r.url.endswith("/ask")) as sent:
            retry.click()
        assert sent.value.post_data_json["question"] == PESKOV
        expect(widget.answered()).to_contain_text("Peskov")
        # The retried question took the failed one's place: one question, one answer, no error left.
        expect(widget.errors).to_have_count(0)
        expect(page.locator("[data-testid=rag-msg-user]")).to_have_count(1)
        expect(widget.answers).to_have_count(1)


def test_a_reload_keeps_the_conversation_and_new_clears_it(page, serve_pipeline, seed_pipeline):
    with serve_pipeline(seed_pipeline) as client:
        expected = client.post("/ask", json={"question": PESKOV}).json()
        page.goto(f"{client.base_url}/")
        widget = Widget(page)
        widget.open()
        expect(page.locator("[data-testid=rag-kept-note]")).to_contain_text("kept in this browser tab")
        widget.ask(PESKOV)
        widget.answered()

        page.reload()
        widget = Widget(page)
        expect(widget.panel).to_be_visible()  # it was open: it opens again
        expect(widget.answers).to_have_count(1)
        answer = widget.answers.first
        expect(answer.locator("[data-testid=rag-answer-text]")).to_have_text(expected["answer"])
        expect(page.locator("[data-testid=rag-msg-user]")).to_contain_text(PESKOV)
        widget.citation(answer, 1).click()  # restored citations still open their source
        expect(page.locator("[data-testid=rag-source-quote]")).to_have_text(expected["citations"][0]["text"])
        page.keyboard.press("Escape")

        # The restored turns are the history of the next question.
        with page.expect_request(lambda r: r.url.endswith("/ask") and r.method == "POST") as sent:
            widget.input.focus()
            widget.ask("And what did Lavrov say?")
        assert sent.value.post_data_json["history"] == [{"role": "user", "content": PESKOV},
                                                        {"role": "assistant", "content": expected["answer"]}]
        expect(widget.answers).to_have_count(2)
        widget.answered()

        page.locator("[data-testid=rag-new]").click()
        expect(widget.answers).to_have_count(0)
        expect(page.locator("[data-testid=rag-greeting]")).to_be_visible()
        page.reload()
        expect(Widget(page).answers).to_have_count(0)


def test_the_quote_is_shown_in_its_passage_and_in_the_whole_document(page, serve_pipeline, seed_pipeline):
    with serve_pipeline(seed_pipeline) as client:
        expected = client.post("/ask", json={"question": PESKOV}).json()
        first = expected["citations"][0]
        passage = next(p for p in expected["passages"] if p["chunk_id"] == first["chunk_id"])
        document = client.get(f"/documents/{first['document_id']}").json()
        page.goto(f"{client.base_url}/")
        widget = Widget(page)
        widget.open()
        widget.ask(PESKOV)
        answer = widget.answered()
        widget.citation(answer, 1).click()

        context = page.locator("[data-testid=rag-source-context]")
        quote = page.locator("[data-testid=rag-source-quote]")
        expect(context).to_have_attribute("data-view", "passage")
        expect(context).to_have_text(passage["text"])  # the whole retrieved passage ...
        expect(quote).to_have_text(first["text"])  # ... with the quote marked inside it
        expect(quote).to_contain_text(PESKOV_SENTENCE_START)
        assert len(passage["text"]) > len(first["text"])
        assert quote.evaluate("el => el.tagName") == "MARK"
        expect(quote).to_be_in_viewport()  # scrolled into sight, while the title has the focus
        expect(page.locator("[data-testid=rag-source-title]")).to_be_focused()
        assert quote.evaluate("el => getComputedStyle(el).backgroundColor") not in ("rgba(0, 0, 0, 0)", "transparent")
        expect(page.locator("[data-testid=rag-source-note]")).to_contain_text(f"{first['start']}\u2013{first['end']}")

        with page.expect_response(lambda r: f"/documents/{first['document_id']}" in r.url) as got:
            page.locator("[data-testid=rag-source-open]").click()
        assert got.value.status == 200
        expect(context).to_have_attribute("data-view", "document")
        expect(context).to_have_text(document["text"])
        expect(quote).to_have_text(first["text"])
        expect(quote).to_be_in_viewport()  # scrolled to the place the quote comes from


def _feedback(client: httpx.Client) -> list[dict]:
    r = client.get("/feedback", params={"format": "jsonl"})
    assert r.status_code == 200, r.text
    return [json.loads(line) for line in r.text.splitlines()]


def test_feedback_reaches_the_server_and_exports_for_evaluation(browser, serve_pipeline, tmp_pipeline, tmp_path):
    pipeline = tmp_pipeline()
    pipeline.load()  # the seed article, indexed into a fresh data dir
    context = browser.new_context(viewport={"width": 360, "height": 740})
    context.grant_permissions(["clipboard-read", "clipboard-write"])
    page = context.new_page()
    try:
        with serve_pipeline(pipeline) as client:
            expected = client.post("/ask", json={"question": PESKOV}).json()
            page.goto(f"{client.base_url}/")
            widget = Widget(page)
            widget.open()
            widget.ask(PESKOV)
            answer = widget.answered()

            # Copy puts the answer and its sources on the clipboard.
            answer.locator("[data-testid=rag-copy]").click()
            expect(answer.locator("[data-testid=rag-copy]")).to_have_text("Copied")
            copied = page.evaluate("navigator.clipboard.readText()")
            assert copied.startswith(expected["answer"]) and "Sources:" in copied
            assert expected["citations"][0]["text"] in copied

            # Thumbs down, then a comment: one rating, with the comment, in the export and the metrics.
            with page.expect_response(lambda r: r.url.endswith("/feedback")) as got:
                answer.locator("[data-testid=rag-thumbs-down]").click()
            assert got.value.status == 201
            expect(answer.locator("[data-testid=rag-thumbs-down]")).to_have_attribute("aria-pressed", "true")
            expect(answer.locator("[data-testid=rag-thumbs-up]")).to_be_disabled()
            comment = answer.locator("[data-testid=rag-feedback-comment]")
            expect(comment).to_be_focused()
            comment.fill("It should also say what Lavrov said")
            with page.expect_response(lambda r: r.url.endswith("/feedback")) as got:
                comment.press("Enter")
            assert got.value.status == 201
            expect(answer.locator("[data-testid=rag-feedback-status]")).to_have_text("Thanks for the comment.")

            widget.ask("What is the Anglo-French peacekeeping plan?")
            expect(widget.answers).to_have_count(2)
            second = widget.answered()
            with page.expect_response(lambda r: r.url.endswith("/feedback")):
                second.locator("[data-testid=rag-thumbs-up]").click()
            expect(second.locator("[data-testid=rag-feedback-status]")).to_have_text("Thanks for the feedback.")

            # A reload remembers what was rated.
            page.reload()
            expect(Widget(page).answers.first.locator("[data-testid=rag-thumbs-down]")).to_have_attribute(
                "aria-pressed", "true")

            rows = _feedback(client)
            assert [r["verdict"] for r in rows] == ["down", "up"]
            down, up = rows
            assert down["question"] == PESKOV and down["comment"] == "It should also say what Lavrov said"
            assert down["rejected_answer"] == expected["answer"] and down["answerable"] is True
            assert up["question"] == "What is the Anglo-French peacekeeping plan?"
            assert up["answers"] and "[" not in up["answers"][0]  # the confirmed answer, markers removed
            assert up["gold_documents"] == [pipeline.index.live_documents()[0].id]
            metrics = client.get("/metrics").text
            assert 'rag_feedback_total{verdict="down"} 1.0' in metrics
            assert 'rag_feedback_total{verdict="up"} 1.0' in metrics

            # The export is a dataset `rag eval` reads.
            path = tmp_path / "feedback.jsonl"
            path.write_text(client.get("/feedback").text, encoding="utf-8")
            dataset = load_jsonl(path)
            assert [i.question for i in dataset.items] == [PESKOV, "What is the Anglo-French peacekeeping plan?"]
            assert dataset.items[1].gold_documents == (pipeline.index.live_documents()[0].id,)
    finally:
        context.close()


THEMED_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Themed</title></head>
<body><p>A page with a themed widget.</p>
<script src="{api}/widget.js" data-api="{api}" data-title="Help desk" data-greeting="Hello! Ask me about the news."
        data-position="left" data-accent="#0a7d32" data-accent-text="#ffffee" defer></script></body></html>"""


def test_theming_from_data_attributes_and_dark_mode(browser, serve_pipeline, seed_pipeline):
    with serve_pipeline(seed_pipeline) as client:
        api = str(client.base_url)

        async def themed(_request):
            return HTMLResponse(THEMED_PAGE.format(api=api))

        with running_server(Starlette(routes=[Route("/", themed)])) as origin:
            looks = {}
            for scheme in ("light", "dark"):
                context = browser.new_context(viewport={"width": 1000, "height": 740}, color_scheme=scheme)
                page = context.new_page()
                page.goto(f"{origin}/")
                widget = Widget(page)
                launcher_box = widget.launcher.bounding_box()
                assert launcher_box["x"] < 100  # bottom-left corner
                assert widget.launcher.evaluate("el => getComputedStyle(el).backgroundColor") == "rgb(10, 125, 50)"
                assert widget.launcher.evaluate("el => getComputedStyle(el).color") == "rgb(255, 255, 238)"
                widget.open()
                expect(page.locator("[data-testid=rag-title]")).to_have_text("Help desk")
                expect(page.locator("[data-testid=rag-greeting]")).to_have_text("Hello! Ask me about the news.")
                assert widget.panel.bounding_box()["x"] < 100
                looks[scheme] = widget.panel.evaluate("el => [getComputedStyle(el).backgroundColor, "
                                                      "getComputedStyle(el).color]")
                context.close()
            assert looks["light"] == ["rgb(255, 255, 255)", "rgb(27, 31, 36)"]
            assert looks["dark"] == ["rgb(22, 27, 34)", "rgb(230, 237, 243)"]


def test_a_long_cjk_conversation_stays_under_the_body_limit(page, serve_pipeline, seed_pipeline):
    """History is trimmed by UTF-8 bytes: 3 bytes per CJK character would overflow a limit counted in
    characters and be refused with 413."""
    turn = "\u8fd9\u662f\u4e00\u4e2a\u5f88\u957f\u7684\u95ee\u9898" * 600  # 6,000 characters, 18,000 bytes
    with serve_pipeline(seed_pipeline) as client:
        api = str(client.base_url)
        saved = {"v": 1, "open": True, "entries": [
            {"role": "user", "content": turn} if i % 2 == 0 else
            {"role": "assistant", "content": turn, "citations": [], "abstained": True, "question": turn}
            for i in range(10)]}
        page.add_init_script(f"sessionStorage.setItem({json.dumps('rag-widget:' + api)}, {json.dumps(json.dumps(saved))})")
        page.goto(f"{api}/")
        widget = Widget(page)
        expect(widget.panel).to_be_visible()
        expect(widget.answers).to_have_count(5)
        with page.expect_response(lambda r: r.url.endswith("/ask")) as got:
            with page.expect_request(lambda r: r.url.endswith("/ask") and r.method == "POST") as sent:
                widget.ask(PESKOV)
        body = sent.value.post_data
        assert len(body.encode("utf-8")) <= 60000
        history = sent.value.post_data_json["history"]
        assert len(history) == 2 and history[-1]["content"] == turn  # the newest turns that fit
        assert got.value.status == 200  # not 413
        widget.answered()  # (what the answer says depends on the follow-up rewrite of a Chinese history)
        expect(widget.errors).to_have_count(0)


def test_a_fallback_is_explained_in_words(page, serve_pipeline, make_seed_pipeline, llm):
    llm.mode = "error"  # the LLM server fails; the extractive generator answers instead
    pipeline = make_seed_pipeline(generator="openai", openai_base_url=llm.base_url, openai_model="stand-in",
                                  openai_max_retries=0)
    with serve_pipeline(pipeline) as client:
        assert client.post("/ask", json={"question": PESKOV}).json()["fallback"]["from"] == "openai"
        page.goto(f"{client.base_url}/")
        widget = Widget(page)
        widget.open()
        widget.ask(PESKOV)
        answer = widget.answered()
        note = answer.locator("[data-testid=rag-fallback]")
        expect(note).to_contain_text("language model could not be used")
        for raw in ("HTTP", "500", "Error", "openai", "fallback"):
            expect(note).not_to_contain_text(raw)
        expect(answer).to_contain_text("Peskov")
