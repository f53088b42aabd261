"""Answers from any OpenAI-compatible chat-completions server (OpenAI, vLLM, Ollama, llama.cpp, LM Studio).

The prompt labels the passages `[S1]..[Sk]` (a form the passages' own bracketed reference numbers
cannot collide with) and asks for `[Sn]` citations. The reply is parsed into segments (`reply.py`):
a label naming no passage is dropped, the rest become citations numbered by first use (also while
streaming), any other bracketed number is literal text and is neutralised in the rendered answer, and
each citation quotes its passage with exact offsets. A reply with no valid citation is treated as an
abstention, since nothing in it is grounded.
"""
from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections import Counter
from dataclasses import dataclass
from typing import AsyncIterator, Sequence

import httpx

from ..conversation import Turn
from ..documents import page_of
from ..errors import (UpstreamConnectError, UpstreamError, UpstreamPayloadError, UpstreamStatusError,
                      UpstreamTimeoutError)
from ..index import Index
from ..retrieval import Passage
from . import Answer, Citation, abstain
from .reply import LABEL_RE, ReplyParser
from .quotes import supporting_span
from .resilience import RETRYABLE_STATUS, CircuitBreaker, CircuitOpenError, retry_delay

SYSTEM_PROMPT = (
    "You answer questions using only the passages you are given; each is labelled with a source id "
    "such as [S1]. Cite every statement with the source id of the passage that supports it, like [S1] "
    "or [S2][S3]; never cite with bare numbers (bracketed numbers inside passages are the documents' "
    "own references, not sources). "
    "Be brief: one to three sentences. If the passages do not contain the answer, reply exactly: "
    "\"I don't know based on the documents.\""
)
REWRITE_PROMPT = (
    "Rewrite the user's last question as one standalone search query, resolving references to the "
    "earlier conversation. Reply with the query only."
)
log = logging.getLogger("rag.llm")
NO_ANSWER_RE = re.compile(r"^\W*i don'?t know based on the documents", re.IGNORECASE)


@dataclass(frozen=True)
class OpenAIConfig:
    base_url: str
    model: str
    api_key: str | None = None
    timeout_s: float = 30.0
    connect_timeout_s: float = 3.0
    temperature: float = 0.0
    max_tokens: int = 400
    max_retries: int = 2  # on connection errors, 429 and 5xx; never after the first streamed token
    breaker_threshold: int = 5
    breaker_cooldown_s: float = 30.0


def _unlabel(text: str) -> str:
    """A passage or title that happens to contain "[S2]" must not read as a source label."""
    return LABEL_RE.sub(lambda m: "(" + m.group(0)[1:-1] + ")", text)


def build_messages(question: str, passages: Sequence[Passage]) -> list[dict]:
    context = "\n\n".join(f"[S{i}] ({_unlabel(p.title)})\n{_unlabel(p.text)}"
                           for i, p in enumerate(passages, start=1))
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": f"Passages:\n\n{context}\n\nQuestion: {question}"},
    ]


def finish_answer(parser: ReplyParser, raw: str, passages: Sequence[Passage], generator: str,
                  index: Index | None = None) -> Answer:
    """The final answer once the whole reply is known (`parser.finish()` called): citations for every
    used passage, each quoting the passage's sentences that support what cites it (with `index`), or an
    abstention when nothing was cited or the model said it does not know."""
    if not parser.numbering or NO_ANSWER_RE.match(raw):
        return abstain(generator)
    claims: dict[int, str] = {}
    for seg in parser.segments:
        for cid in seg.citations:
            claims[cid] = claims.get(cid, "") + " " + seg.text
    citations = []
    for passage_no, cid in sorted(parser.numbering.items(), key=lambda kv: kv[1]):
        p = passages[passage_no - 1]
        start, end = (p.start, p.end) if index is None else supporting_span(index, p, claims.get(cid, ""))
        quote = p.text[start - p.start:end - p.start]
        citations.append(Citation(id=cid, chunk_id=p.chunk_id, document_id=p.document_id, source=p.source,
                                  title=p.title, text=quote, start=start, end=end, score=p.score,
                                  page=p.page if index is None else page_of(index.document(p.document_id), start)))
    segments = list(parser.segments)
    if segments:  # the streamed text was stripped at the start as well
        segments[0] = type(segments[0])(segments[0].text.lstrip(), segments[0].citations)
    return Answer.of(segments, generator=generator, citations=citations)


def cite(reply: str, passages: Sequence[Passage], generator: str, index: Index | None = None) -> Answer:
    """Turn a reply citing `[Sn]` source labels into an answer with first-use-numbered citations."""
    parser = ReplyParser(len(passages))
    parser.feed(reply)
    parser.finish()
    return finish_answer(parser, reply, passages, generator, index)



class OpenAIChatGenerator:
    name = "openai"

    def __init__(self, config: OpenAIConfig, transport: httpx.BaseTransport | None = None):
        self.config = config
        self._headers = {"Authorization": f"Bearer {config.api_key}"} if config.api_key else {}
        self._timeout = httpx.Timeout(config.timeout_s, connect=config.connect_timeout_s)
        self._client = httpx.Client(base_url=config.base_url.rstrip("/"), headers=self._headers,
                                    transport=transport, timeout=self._timeout)
        self.breaker = CircuitBreaker(config.breaker_threshold, config.breaker_cooldown_s)
        self.failures: Counter[str] = Counter()  # by reason: timeout, connect, http_<status>, payload, circuit_open

    def _payload(self, messages: list[dict], stream: bool) -> dict:
        return {"model": self.config.model, "messages": messages, "temperature": self.config.temperature,
                "max_tokens": self.config.max_tokens, "stream": stream}

    def _failure(self, exc: Exception) -> UpstreamError:
        log.warning("LLM server call failed: %s: %s", type(exc).__name__, exc)
        if isinstance(exc, httpx.TimeoutException):
            return UpstreamTimeoutError(f"LLM server timed out ({type(exc).__name__})")
        return UpstreamConnectError(f"LLM server unreachable ({type(exc).__name__})")

    @staticmethod
    def _status_error(status: int, body: str) -> UpstreamError:
        # The body can carry account details (a masked key, an organisation): logged, never returned.
        log.warning("LLM server answered HTTP %s: %s", status, body[:500])
        return UpstreamStatusError(f"LLM server answered HTTP {status}", status)

    def complete(self, messages: list[dict]) -> str:
        """One chat completion, retried with backoff on connection errors, 429 and 5xx."""
        return self.complete_with_usage(messages)[0]

    def complete_with_usage(self, messages: list[dict]) -> tuple[str, dict | None]:
        """The completion's text and the server's own `usage` (token counts), when it sent one."""
        self._before_call()
        try:
            return self._complete(messages)
        finally:
            self.breaker.abandon()  # no-op after an outcome was recorded; frees a cancelled trial

    def _complete(self, messages: list[dict]) -> tuple[str, dict | None]:
        for attempt in range(self.config.max_retries + 1):
            try:
                response = self._client.post("/chat/completions", json=self._payload(messages, False))
            except httpx.HTTPError as exc:
                error = self._failure(exc)
                if isinstance(error, UpstreamTimeoutError) or attempt == self.config.max_retries:
                    raise self._failed(error) from exc
                time.sleep(retry_delay(attempt, None))
                continue
            if response.status_code in RETRYABLE_STATUS and attempt < self.config.max_retries:
                time.sleep(retry_delay(attempt, response.headers.get("retry-after")))
                continue
            if response.status_code >= 400:
                raise self._failed(self._status_error(response.status_code, response.text))
            try:
                body = response.json()
                content = str(body["choices"][0]["message"]["content"] or "")
            except (ValueError, KeyError, IndexError, TypeError) as exc:
                log.warning("LLM server sent an unexpected payload: %s", response.text[:500])
                raise self._failed(UpstreamPayloadError("LLM server sent an unexpected payload")) from exc
            self.breaker.record_success()
            return content, _usage(body.get("usage"))
        raise AssertionError("unreachable")

    def _before_call(self) -> None:
        try:
            self.breaker.before_call()
        except CircuitOpenError:
            self.failures["circuit_open"] += 1
            raise

    def _failed(self, error: UpstreamError) -> UpstreamError:
        """Count a failed call (after its retries) and feed the circuit breaker."""
        self.failures[error.reason] += 1
        self.breaker.record_failure()
        return error

    def generate(self, question: str, passages: Sequence[Passage], index: Index, *,
                 query_vector=None) -> Answer:
        if not passages:
            return abstain(self.name)
        reply, usage = self.complete_with_usage(build_messages(question, passages))
        answer = cite(reply, passages, self.name, index)
        answer.usage = usage
        return answer

    def rewrite(self, question: str, history: Sequence[Turn]) -> str:
        """A standalone query for a follow-up, written by the LLM."""
        turns = [{"role": t.role, "content": t.content} for t in history if t.role in ("user", "assistant")]
        messages = [{"role": "system", "content": REWRITE_PROMPT}, *turns, {"role": "user", "content": question}]
        query = self.complete(messages).strip().strip('"').strip()
        return query or question

    async def astream(self, question: str, passages: Sequence[Passage], index: Index, *,
                      query_vector=None) -> AsyncIterator[str | Answer]:
        """Relay tokens as the server sends them (markers renumbered on the fly). Leaving the
        iteration early (a client that went away) closes the upstream connection."""
        if not passages:
            yield abstain(self.name)
            return
        parser = ReplyParser(len(passages))
        raw, text = [], []
        payload = self._payload(build_messages(question, passages), True)
        self._before_call()
        try:
            async for piece in self._astream(payload, parser, raw, text):
                yield piece
        finally:
            self.breaker.abandon()  # a client that left mid-stream must not keep the circuit half-open
        rest = parser.finish()
        if rest:
            text.append(rest)
            yield rest
        yield finish_answer(parser, "".join(raw), passages, self.name, index)

    async def _astream(self, payload: dict, parser: ReplyParser, raw: list[str],
                       text: list[str]) -> AsyncIterator[str]:
        for attempt in range(self.config.max_retries + 1):
            try:
                async with httpx.AsyncClient(base_url=self.config.base_url.rstrip("/"), headers=self._headers,
                                             timeout=self._timeout) as client:
                    async with client.stream("POST", "/chat/completions", json=payload) as response:
                        if response.status_code in RETRYABLE_STATUS and attempt < self.config.max_retries:
                            await asyncio.sleep(retry_delay(attempt, response.headers.get("retry-after")))
                            continue
                        if response.status_code >= 400:
                            body = (await response.aread()).decode("utf-8", "replace")
                            raise self._failed(self._status_error(response.status_code, body))
                        async for line in response.aiter_lines():
                            delta = _sse_delta(line)
                            if delta is None:
                                continue
                            if delta is _DONE:
                                break
                            raw.append(delta)
                            piece = parser.feed(delta)
                            if piece:
                                text.append(piece)
                                yield piece
                break
            except UpstreamPayloadError as exc:  # a bad stream chunk: count it, it was not counted yet
                raise self._failed(exc) from exc
            except httpx.HTTPError as exc:
                error = self._failure(exc)
                if raw or isinstance(error, UpstreamTimeoutError) or attempt == self.config.max_retries:
                    raise self._failed(error) from exc
                await asyncio.sleep(retry_delay(attempt, None))
        self.breaker.record_success()

    def close(self) -> None:
        self._client.close()


_DONE = object()


def _usage(raw) -> dict | None:
    """The upstream's token counts, if it sent them in OpenAI's shape."""
    keys = ("prompt_tokens", "completion_tokens", "total_tokens")
    if isinstance(raw, dict) and all(isinstance(raw.get(k), int) and raw[k] >= 0 for k in keys):
        return {k: raw[k] for k in keys}
    return None


def _sse_delta(line: str):
    """The content delta of one `data:` line of a chat.completion.chunk stream, `_DONE`, or None."""
    if not line.startswith("data:"):
        return None
    data = line[5:].strip()
    if data == "[DONE]":
        return _DONE
    try:
        chunk = json.loads(data)
        return (chunk["choices"][0].get("delta") or {}).get("content") or None
    except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
        log.warning("LLM server sent an unexpected stream chunk: %s", data[:500])
        raise UpstreamPayloadError("LLM server sent an unexpected stream chunk") from exc
