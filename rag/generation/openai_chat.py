"""Answers from any OpenAI-compatible chat-completions server (OpenAI, vLLM, Ollama, llama.cpp, LM Studio).

The prompt numbers the passages `[1]..[k]` and asks for `[n]` citations. The reply's markers are
checked: a marker naming no passage is dropped, the rest are renumbered by first use and each
citation quotes its passage with exact offsets. A reply with no valid citation is treated as an
abstention, since nothing in it is grounded.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

import httpx

from ..errors import UpstreamError
from ..index import Index
from ..retrieval import Passage
from . import ABSTAIN_TEXT, MARKER_RE, Answer, Citation

SYSTEM_PROMPT = (
    "You answer questions using only the numbered passages you are given. "
    "Cite every statement with the number of the passage that supports it, like [1] or [2]. "
    "Be brief: one to three sentences. If the passages do not contain the answer, reply exactly: "
    "\"I don't know based on the documents.\""
)
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


def build_messages(question: str, passages: Sequence[Passage]) -> list[dict]:
    context = "\n\n".join(f"[{i}] ({p.title})\n{p.text}" for i, p in enumerate(passages, start=1))
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": f"Passages:\n\n{context}\n\nQuestion: {question}"},
    ]


def cite(reply: str, passages: Sequence[Passage], generator: str) -> Answer:
    """Turn a reply with passage-numbered markers into an answer with first-use-numbered citations."""
    numbering: dict[int, int] = {}

    def renumber(match: re.Match) -> str:
        out = []
        for raw in match.group(1).split(","):
            n = int(raw)
            if 1 <= n <= len(passages):
                numbering.setdefault(n, len(numbering) + 1)
                out.append(f"[{numbering[n]}]")
        return "".join(out)

    text = MARKER_RE.sub(renumber, reply)
    text = re.sub(r"[ \t]+([.,;:!?])", r"\1", re.sub(r"[ \t]{2,}", " ", text)).strip()
    if not numbering or NO_ANSWER_RE.match(reply):
        return Answer(text=ABSTAIN_TEXT, abstained=True, generator=generator)
    citations = []
    for passage_no, cid in sorted(numbering.items(), key=lambda kv: kv[1]):
        p = passages[passage_no - 1]
        citations.append(Citation(id=cid, chunk_id=p.chunk_id, document_id=p.document_id, source=p.source,
                                  title=p.title, text=p.text, start=p.start, end=p.end, score=p.score))
    return Answer(text=text, abstained=False, generator=generator, citations=citations)


class OpenAIChatGenerator:
    name = "openai"

    def __init__(self, config: OpenAIConfig, transport: httpx.BaseTransport | None = None):
        self.config = config
        headers = {"Authorization": f"Bearer {config.api_key}"} if config.api_key else {}
        self._client = httpx.Client(
            base_url=config.base_url.rstrip("/"), headers=headers, transport=transport,
            timeout=httpx.Timeout(config.timeout_s, connect=config.connect_timeout_s),
        )

    def complete(self, messages: list[dict]) -> str:
        payload = {"model": self.config.model, "messages": messages, "temperature": self.config.temperature,
                   "max_tokens": self.config.max_tokens, "stream": False}
        try:
            response = self._client.post("/chat/completions", json=payload)
        except httpx.TimeoutException as exc:
            raise UpstreamError(f"LLM server at {self.config.base_url} timed out ({type(exc).__name__})",
                                timeout=True) from exc
        except httpx.HTTPError as exc:
            raise UpstreamError(f"LLM server at {self.config.base_url} unreachable: {exc}") from exc
        if response.status_code >= 400:
            raise UpstreamError(f"LLM server answered HTTP {response.status_code}: {response.text[:200]}",
                                status=response.status_code)
        try:
            return str(response.json()["choices"][0]["message"]["content"] or "")
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise UpstreamError(f"LLM server sent an unexpected payload: {response.text[:200]}") from exc

    def generate(self, question: str, passages: Sequence[Passage], index: Index) -> Answer:
        if not passages:
            return Answer(text=ABSTAIN_TEXT, abstained=True, generator=self.name)
        return cite(self.complete(build_messages(question, passages)), passages, self.name)

    def close(self) -> None:
        self._client.close()
