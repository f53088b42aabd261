"""Request and response schemas of the HTTP API (the design's contract)."""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from rag.config import RetrievalMode

def _encodable(value: str) -> str:
    """Refuse strings JSON allows but UTF-8 cannot carry (lone surrogates such as "\\ud800")."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("contains an invalid Unicode character (a lone surrogate)") from None
    return value


Text = Annotated[str, AfterValidator(_encodable)]
TopK = Annotated[int, Field(strict=True, ge=1, le=50, description="How many passages to retrieve (1-50).")]


class Filters(BaseModel):
    model_config = ConfigDict(extra="forbid")
    source: Text | list[Text] | None = Field(None, description="Source path or glob (`seeds/*`), or a list of them.")
    document_id: Text | list[Text] | None = Field(None, description="Document id, or a list of them.")


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Literal["user", "assistant"]
    content: Annotated[Text, Field(strict=True, max_length=20000)]


class AskRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    question: Annotated[Text, Field(strict=True, description="The question; not blank.")]
    top_k: TopK = 5
    generator: str | None = Field(None, description="`extractive` (default) or `openai`.")
    filters: Filters | None = None
    mode: RetrievalMode | None = Field(None, description="Retrieval mode; hybrid by default.")
    stream: bool = Field(False, description="Answer as Server-Sent Events (passages, delta..., citations, done).")
    history: list[Message] = Field(default_factory=list, max_length=50,
                                   description="Earlier turns, oldest first; the server keeps no conversation state.")


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    query: Annotated[Text, Field(strict=True, description="The search query; not blank.")]
    top_k: TopK = 5
    filters: Filters | None = None
    mode: RetrievalMode | None = None


class PassageOut(BaseModel):
    chunk_id: str
    document_id: str
    source: str
    title: str
    text: str
    start: int
    end: int
    score: float
    rank: int


class CitationOut(BaseModel):
    id: int
    chunk_id: str
    document_id: str
    source: str
    title: str
    text: str = Field(description="Exactly the document's stored text[start:end].")
    start: int
    end: int
    score: float


class SegmentOut(BaseModel):
    text: str = Field(description="A piece of the answer as written: a verbatim quote, a model's sentence or "
                                  "connective text (bracketed numbers of the documents kept as they are).")
    citations: list[int] = Field(description="Ids of the citations supporting this text; empty for connective text.")


class Fallback(BaseModel):
    from_: str = Field(alias="from")
    reason: str


class AskResponse(BaseModel):
    query: str | None = Field(None, description="What retrieval used: the question or its standalone rewrite.")
    answer: str
    abstained: bool
    generator: str
    citations: list[CitationOut]
    segments: list[SegmentOut] = Field(
        description="The answer's structure; `answer` is rendered from it: each segment's text (bracketed "
                    "numbers as parentheses) followed by ' [n]' per citation.")
    passages: list[PassageOut]
    timings_ms: dict[str, float]
    fallback: Fallback | None = None


class SearchResponse(BaseModel):
    passages: list[PassageOut]


class ErrorBody(BaseModel):
    detail: str


# -- OpenAI-compatible chat ---------------------------------------------------------------
class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: Text | list[dict] | None = None


class ChatCompletionRequest(BaseModel):
    """The fields of OpenAI's request that matter here; others (temperature, ...) are accepted and ignored."""

    model_config = ConfigDict(extra="allow")
    model: str
    messages: list[ChatMessage] = Field(min_length=1, max_length=100)
    stream: bool = False


class OpenAIErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class OpenAIError(BaseModel):
    error: OpenAIErrorDetail
