"""Helpers shared by the tests: real servers on loopback, the LLM stand-in, contract checks."""
from __future__ import annotations

import asyncio
import json
import re
import socket
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

from server.serving import uvicorn_config

REPO = Path(__file__).resolve().parents[1]
SEEDS = REPO / "seeds"
# `../shared/` from the project root; from a worktree (/work/wt/NAME) it is one level further up.
DEV_QA = next((p / "shared" / "data" / "seed_dev_qa.jsonl" for p in Path(__file__).resolve().parents[2:4]
               if (p / "shared" / "data" / "seed_dev_qa.jsonl").exists()),
              Path(__file__).resolve().parents[2] / "shared" / "data" / "seed_dev_qa.jsonl")
SQUAD = DEV_QA.parent / "squad-v1.1-dev.json.gz"
SEED_FILE = "000_3a5d4e61db94d030.txt"
MARKER = re.compile(r"\[(\d+(?:\s*,\s*\d+)*)\]")
LITERAL_BRACKET = re.compile(r"\[\s*\d[^\[\]\n]{0,60}\]")
OFF_TOPIC = "What will the weather be in Paris tomorrow?"
PESKOV_SENTENCE_START = "However, Russia has strongly rejected this idea, with Kremlin spokesman Dmitry Peskov"


# -- real servers ----------------------------------------------------------------------
def free_port() -> int:
    """A port free on loopback now (for a server started in another process)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running_server(app, port: int = 0) -> Iterator[str]:
    """Run `app` with uvicorn on a loopback port (a free one unless given) in a background thread;
    yields its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    port = sock.getsockname()[1]
    config = uvicorn_config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=2)
    server = uvicorn.Server(config)
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


def wait_ready(client: httpx.Client, deadline_s: float = 60) -> dict:
    """Poll /readyz until it answers 200 (a readiness wait, not a timing assertion)."""
    deadline = time.monotonic() + deadline_s
    while True:
        r = client.get("/readyz")
        if r.status_code == 200:
            return r.json()
        if time.monotonic() > deadline:
            raise AssertionError(f"server never became ready: {r.status_code} {r.text}")
        time.sleep(0.05)


# -- the OpenAI-compatible stand-in ----------------------------------------------------
class LLMStandIn:
    """A chat-completions server on loopback. Behaviour per test:

    mode "normal"  -> 200 with `reply` (default cites passages [S2] then [S1][S2], as the prompt asks)
    mode "slow"    -> sleeps `delay` seconds, then answers like "normal"
    mode "hold"    -> waits until `release` is set (by the test), then answers like "normal"
    mode "error"   -> HTTP `status` (500) with an OpenAI-style error body
    mode "garbage" -> 200 with a body that is not a chat completion
    With `"stream": true` in the request it streams `reply` word by word as chat.completion.chunk
    events (`token_delay` seconds apart), counting tokens sent and noticing a client that leaves.
    A request whose system prompt asks for a rewrite gets `rewrite_reply`.
    """

    DEFAULT_REPLY = "Russia rejected the plan [S2]. Peskov and Lavrov both expressed disapproval [S1][S2]."

    def __init__(self) -> None:
        self.base_url = ""
        self.requests: list[dict] = []
        self.reset()

    def reset(self) -> None:
        self.mode = "normal"
        self.reply = self.DEFAULT_REPLY
        self.delay = 0.0
        self.status = 500
        self.requests = []
        self.rewrite_reply = "standalone query from the LLM"
        self.fail_first = 0  # answer this many requests with 503 before behaving as `mode` says
        self.token_delay = 0.0
        self.tokens_sent = 0
        self.stream_finished = False
        self.stream_abandoned = False
        self.release = threading.Event()

    def app(self) -> Starlette:
        async def completions(request: Request):
            body = await request.json()
            self.requests.append({"body": body, "headers": dict(request.headers)})
            if self.mode == "slow":
                await asyncio.sleep(self.delay)
            elif self.mode == "hold":
                while not self.release.is_set():  # polled, so the stand-in's own loop stays free
                    await asyncio.sleep(0.01)
            if self.fail_first > 0:
                self.fail_first -= 1
                return JSONResponse({"error": {"message": "warming up", "type": "server_error"}},
                                    status_code=503, headers={"Retry-After": "0"})
            if self.mode == "error":
                return JSONResponse({"error": {"message": "the model crashed", "type": "server_error"}},
                                    status_code=self.status)
            if self.mode == "garbage":
                return JSONResponse({"unexpected": True})
            system = next((m["content"] for m in body.get("messages", []) if m.get("role") == "system"), "")
            reply = self.rewrite_reply if system.startswith("Rewrite") else self.reply
            if body.get("stream"):
                return StreamingResponse(self._stream(body, reply), media_type="text/event-stream")
            return JSONResponse({
                "id": "chatcmpl-standin-1",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.get("model"),
                "choices": [{"index": 0, "message": {"role": "assistant", "content": reply},
                             "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120},
            })

        return Starlette(routes=[Route("/v1/chat/completions", completions, methods=["POST"])])

    async def _stream(self, body: dict, reply: str):
        def chunk(delta: dict, finish=None) -> str:
            return "data: " + json.dumps({"id": "chatcmpl-standin-2", "object": "chat.completion.chunk",
                                          "created": int(time.time()), "model": body.get("model"),
                                          "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}) + "\n\n"

        try:
            yield chunk({"role": "assistant", "content": ""})
            for token in re.findall(r"\S+\s*", reply):
                if self.token_delay:
                    await asyncio.sleep(self.token_delay)
                yield chunk({"content": token})
                self.tokens_sent += 1
            yield chunk({}, "stop")
            yield "data: [DONE]\n\n"
            self.stream_finished = True
        except (asyncio.CancelledError, GeneratorExit):
            self.stream_abandoned = True
            raise


# -- contract checks -------------------------------------------------------------------
def markers(text: str) -> list[int]:
    out: list[int] = []
    for m in MARKER.finditer(text):
        out.extend(int(x) for x in m.group(1).split(","))
    return out


def document_text(pipeline, document_id: str) -> str:
    doc = pipeline.index.document(document_id)
    assert doc is not None, f"citation names unknown document {document_id}"
    return doc.text


def check_answer_contract(result: dict, pipeline) -> None:
    """The design's citation rules, on an /ask-shaped dict."""
    cited = markers(result["answer"])
    citations = result["citations"]
    # No bracketed number in the answer that is not a marker (documents' own "[2]" are neutralised).
    stray = [m.group(0) for m in LITERAL_BRACKET.finditer(result["answer"]) if not MARKER.fullmatch(m.group(0))]
    assert not stray, f"bracketed numbers that are not markers: {stray}"
    if "segments" in result:  # the answer is rendered from its segments
        from rag.generation import Segment, render

        assert render([Segment(s["text"], tuple(s["citations"])) for s in result["segments"]]) == result["answer"]
    if result["abstained"]:
        assert citations == [], "an abstention cites nothing"
        assert cited == [], "an abstention has no markers"
        assert result["answer"].strip()
        return
    assert citations, "an answer that does not abstain cites its evidence"
    # Every [n] resolves to citations[n-1].
    for n in cited:
        assert 1 <= n <= len(citations), f"[{n}] names no citation ({len(citations)} citations)"
    # Every citation is used, and numbering is by first use (1, 2, 3, ... in order of appearance).
    first_use = list(dict.fromkeys(cited))
    assert first_use == list(range(1, len(citations) + 1)), f"markers in first-use order: {first_use}"
    for i, c in enumerate(citations, start=1):
        assert c["id"] == i
        text = document_text(pipeline, c["document_id"])
        assert 0 <= c["start"] < c["end"] <= len(text)
        assert text[c["start"]:c["end"]] == c["text"], "citation text must equal document.text[start:end]"


def check_passage(p: dict, pipeline) -> None:
    assert set(p) >= {"chunk_id", "document_id", "source", "title", "text", "start", "end", "score", "rank"}
    assert isinstance(p["chunk_id"], str) and p["chunk_id"]
    assert isinstance(p["score"], float)
    doc = pipeline.index.document(p["document_id"])
    assert doc is not None
    assert p["source"] == doc.source and p["title"] == doc.title
    assert doc.text[p["start"]:p["end"]] == p["text"]
