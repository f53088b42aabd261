"""Request schemas of the HTTP API, and the error bodies (responses are the library's result types)."""
from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PlainSerializer, PlainValidator, WithJsonSchema

from rag.config import RetrievalMode
from rag.errors import InvalidInputError
from rag.filters import Filter as RagFilter, FilterError

LONE_SURROGATE = "contains an invalid Unicode character (a lone surrogate)"


def _encodable(value: str) -> str:
    """Refuse strings JSON allows but UTF-8 cannot carry (lone surrogates such as "\\ud800").

    JSON bodies are checked once for every route before parsing (server/jsonbounds.py); this is the
    same rule for text that arrives another way (form fields, text extracted from uploaded files)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(LONE_SURROGATE) from None
    return value


def require_storable(doc) -> None:
    """422 (InvalidInputError) for a document whose text, title, source or metadata UTF-8 cannot store."""
    for what, value in (("text", doc.text), ("title", doc.title), ("source", doc.source),
                        ("metadata", json.dumps(doc.metadata, ensure_ascii=False))):
        try:
            _encodable(value)
        except ValueError:
            raise InvalidInputError(f"document {what} {LONE_SURROGATE}") from None


Text = Annotated[str, AfterValidator(_encodable)]
StrictBool = Annotated[bool, Field(strict=True)]  # JSON true/false only: "yes", 1 and "true" are refused
TopK = Annotated[int, Field(strict=True, ge=1, le=50, description="How many passages to retrieve (1-50).")]


def _parse_filters(value: Any) -> Any:
    """Filters are parsed (and bounded) once, here at the boundary, into `rag.filters.Filter`."""
    if isinstance(value, RagFilter):
        return value
    if not isinstance(value, dict):
        raise ValueError("filters must be an object")
    try:
        return RagFilter.parse(value)
    except FilterError as exc:
        raise ValueError(str(exc)) from None


Filters = Annotated[Any, PlainValidator(_parse_filters), PlainSerializer(lambda f: f.raw if f else None),
                    WithJsonSchema({"type": "object", "description": (
                        "Which documents to search: `{\"source\": \"seeds/*\"}`, `{\"document_id\": [...]}`, "
                        "`{\"metadata.year\": {\"$gte\": 2020}}`, combined with `$and`/`$or`/`$not`. "
                        "Operators: $eq $ne $in $nin $gt $gte $lt $lte $exists $glob (see docs/formats.md)."),
                        "examples": [{"source": "seeds/*"}, {"metadata.author": "Ann", "metadata.year": {"$gte": 2020}}]})]


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
    stream: StrictBool = Field(False, description="Answer as Server-Sent Events (passages, delta..., citations, done).")
    history: list[Message] = Field(default_factory=list, max_length=50,
                                   description="Earlier turns, oldest first; the server keeps no conversation state.")


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    query: Annotated[Text, Field(strict=True, description="The search query; not blank.")]
    top_k: TopK = 5
    filters: Filters | None = None
    mode: RetrievalMode | None = None


# Responses are the library's result types (rag.retrieval.Passage, rag.generation.Citation,
# rag.service.AskResult and SearchResult), served as they are.


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
    stream: StrictBool = False


class OpenAIErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class OpenAIError(BaseModel):
    error: OpenAIErrorDetail
