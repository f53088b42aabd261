"""The document API: add, list, read, replace and delete documents while the service answers.

`POST /documents` takes JSON (one document, `{"url": ...}` to fetch a web page, or
`{"documents": [...]}`) or a multipart upload (`file`: .txt, .md, .html, .pdf, .docx or .pptx; optional
`id`, `title` fields). Uploads and pages go through the same loaders as `rag ingest` (`rag.loaders`),
off the event loop and within a time budget. Upload names are labels only: nothing is ever written
to disk under a name a client chose.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import re
import threading
from typing import Annotated, Any

from fastapi import FastAPI, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from rag.documents import Document, document_id_for, fetch_options_for, limits_for, make_document
from rag.errors import DocumentNotFoundError, InputTooLargeError, InvalidInputError, UnsupportedMediaError
from rag.fetch import load_url
from rag.loaders import (BinaryContentError, DocumentTooLargeError, UnsupportedFormatError, format_for,
                         load_bytes, supported_suffixes)
from rag.pipeline import Pipeline

from .auth import Access
from .errors import responses
from .schemas import Text, require_storable

MAX_URLS_PER_REQUEST = 10
DocId = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:#@+=-]*$")]


class DocumentIn(BaseModel):
    """A document given as `text`, or as a `url` to fetch (http(s); the source is then the URL)."""

    model_config = ConfigDict(extra="forbid")
    id: DocId | None = None
    title: Annotated[Text, Field(max_length=500)] | None = None
    source: Annotated[Text, Field(max_length=1000)] | None = None
    text: Annotated[Text, Field(strict=True)] | None = None
    url: Annotated[Text, Field(strict=True, max_length=2048)] | None = None
    metadata: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _text_or_url(self) -> "DocumentIn":
        if (self.text is None) == (self.url is None):
            raise ValueError("give either `text` or `url`")
        if self.url is not None and self.source is not None:
            raise ValueError("a fetched page's source is its URL; leave `source` out")
        return self


class DocumentBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    documents: list[DocumentIn] = Field(min_length=1)


class DocumentSummary(BaseModel):
    id: str
    title: str
    source: str
    chars: int
    content_hash: str
    metadata: dict[str, Any]


class DocumentOut(DocumentSummary):
    text: str = Field(description="The stored text; citations' start/end index into it.")


class DocumentPage(BaseModel):
    documents: list[DocumentSummary]
    total: int
    offset: int
    limit: int


class WriteResult(BaseModel):
    id: str
    status: str = Field(description="added, updated or unchanged")


class WriteResponse(BaseModel):
    documents: list[WriteResult]


_BODY = TypeAdapter(DocumentBatch | DocumentIn)


def summary(doc: Document) -> dict:
    return {"id": doc.id, "title": doc.title, "source": doc.source, "chars": doc.chars,
            "content_hash": doc.content_hash, "metadata": public_metadata(doc.metadata)}


def public_metadata(metadata: dict) -> dict:
    """Metadata as clients see it: a file's `origin` (an absolute path on the server's disk) stays inside."""
    origin = metadata.get("origin")
    if isinstance(origin, str) and not origin.startswith(("http://", "https://")):
        return {k: v for k, v in metadata.items() if k != "origin"}
    return metadata


def _check_metadata(metadata: dict[str, Any] | None) -> None:
    if metadata is None:
        return
    encoded = json.dumps(metadata, ensure_ascii=False)
    if len(encoded) > 10_000:
        raise InputTooLargeError("metadata is over 10000 characters of JSON")
    try:
        encoded.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInputError("metadata contains an invalid Unicode character (a lone surrogate)") from None


def _from_json(item: DocumentIn, settings, doc_id: str | None = None, known=None) -> Document:
    """A JSON document; with `url`, the fetched page (in a worker thread: this blocks)."""
    _check_metadata(item.metadata)
    if item.url is not None:
        doc, _unchanged = load_url(item.url, options=fetch_options_for(settings), known=known,
                                   limits=limits_for(settings, max_bytes=settings.max_upload_bytes))
        if doc_id or item.id or item.title or item.metadata:
            doc = make_document(doc.text, source=doc.source, id=doc_id or item.id or doc.id,
                                title=item.title or doc.title, metadata={**(item.metadata or {}), **doc.metadata})
        return doc
    assert item.text is not None
    if not item.text.strip():
        raise InvalidInputError("document text must not be empty")
    if len(item.text) > settings.max_document_chars:
        raise InputTooLargeError(f"document text is {len(item.text)} characters; the limit is "
                                 f"{settings.max_document_chars}")
    doc_id = doc_id or item.id or hashlib.sha256(item.text.encode("utf-8")).hexdigest()[:16]
    return make_document(item.text, source=item.source or f"api/{doc_id}", title=item.title, id=doc_id,
                         metadata=item.metadata)


def _safe_name(name: str) -> str:
    base = re.split(r"[\\/]", name or "")[-1]
    base = re.sub(r"[^\w.-]+", "_", base).strip("._") or "upload"
    return base[:200]


def parse_upload(name: str, data: bytes, *, doc_id: str | None, title: str | None, settings) -> Document:
    """An uploaded file as a document, through the same loaders as `rag ingest`."""
    safe = _safe_name(name)
    try:
        kind = format_for(safe)
    except UnsupportedFormatError:
        raise UnsupportedMediaError(f"unsupported file type {_suffix(safe)}; upload "
                                    f"{', '.join(supported_suffixes())}") from None
    source = f"upload/{safe}"
    try:
        loaded = load_bytes(data, safe, kind=kind, limits=limits_for(settings, max_bytes=settings.max_upload_bytes))
    except BinaryContentError as exc:
        raise UnsupportedMediaError(str(exc)) from exc
    return make_document(loaded.text, source=source, title=title or loaded.title,
                         id=doc_id or document_id_for(source), metadata={**loaded.metadata, "filename": safe})


def _suffix(name: str) -> str:
    return ("." + name.rsplit(".", 1)[-1].lower()) if "." in name else "(none)"


async def _off_loop(settings, func, /, *args, **kwargs):
    """Parsing and fetching run in a worker thread, within the parse time budget (the loaders also
    check the budget as they go, so the thread stops soon after a timeout answers)."""
    budget = settings.parse_timeout_s + settings.fetch_timeout_s + 5
    try:
        return await asyncio.wait_for(run_in_threadpool(func, *args, **kwargs), timeout=budget)
    except asyncio.TimeoutError:
        raise DocumentTooLargeError(f"reading the document took longer than {budget:g} s") from None


async def _documents_from_request(request: Request, settings, known=None) -> list[Document]:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "application/json":
        try:
            raw = await request.json()
        except ValueError:
            raise InvalidInputError("request body is not valid JSON") from None
        try:
            body = _BODY.validate_python(raw)
        except ValidationError as exc:
            raise InvalidInputError("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:5]))
        items = body.documents if isinstance(body, DocumentBatch) else [body]
        if len(items) > settings.max_documents_per_request:
            raise InputTooLargeError(f"{len(items)} documents in one request; the limit is "
                                     f"{settings.max_documents_per_request}")
        urls = sum(item.url is not None for item in items)
        if urls > MAX_URLS_PER_REQUEST:  # each fetch may take RAG_FETCH_TIMEOUT_S: keep one request short
            raise InputTooLargeError(f"{urls} URLs in one request; the limit is {MAX_URLS_PER_REQUEST}")
        docs = []
        for item in items:
            if item.url is not None:
                docs.append(await _off_loop(settings, _from_json, item, settings, known=known))
            else:
                docs.append(_from_json(item, settings))
    elif ctype == "multipart/form-data":
        form = await request.form(max_files=1, max_fields=10)
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise InvalidInputError("multipart upload needs a `file` field")
        data = await upload.read()
        doc_id = form.get("id") if isinstance(form.get("id"), str) else None
        if doc_id is not None:
            doc_id = _check_id(doc_id)
        title = form.get("title") if isinstance(form.get("title"), str) else None
        docs = [await _off_loop(settings, parse_upload, upload.filename or "", data, doc_id=doc_id, title=title,
                                settings=settings)]
    else:
        raise UnsupportedMediaError("send application/json or multipart/form-data")
    ids = [d.id for d in docs]
    if len(set(ids)) != len(ids):
        raise InvalidInputError("the same document id appears twice in one request")
    return docs


def _check_id(value: str) -> str:
    try:
        return TypeAdapter(DocId).validate_python(value)
    except ValidationError:
        raise InvalidInputError(f"invalid document id {value[:50]!r}: up to 200 letters, digits and ._:#@+=-") from None


def register(app: FastAPI, pipeline: Pipeline, metrics, access: Access | None = None) -> None:
    settings = pipeline.settings
    access = access or Access(settings)
    write, read = access.write(), access.read()

    def _known(doc_id: str) -> Document | None:
        return pipeline.index.document(doc_id) if pipeline.ready else None

    async def _write(request: Request, docs: list[Document]) -> list[str]:
        """Write `docs`, giving up (nothing written) if the client leaves while they are embedded:
        a large document must not keep the writer's lock for a client that is gone."""
        gone = threading.Event()

        async def watch() -> None:
            while not await request.is_disconnected():
                await asyncio.sleep(0.25)
            gone.set()

        watcher = asyncio.create_task(watch())
        try:
            return await run_in_threadpool(pipeline.put_documents, docs, cancelled=gone.is_set)
        finally:
            watcher.cancel()

    @app.post("/documents", response_model=WriteResponse, dependencies=write, status_code=200,
              openapi_extra={"requestBody": {"required": True, "content": {
                  "application/json": {"schema": {"anyOf": [DocumentIn.model_json_schema(),
                                                            DocumentBatch.model_json_schema(
                                                                ref_template="#/components/schemas/{model}")]}},
                  "multipart/form-data": {"schema": {"type": "object", "required": ["file"], "properties": {
                      "file": {"type": "string", "format": "binary"}, "id": {"type": "string"},
                      "title": {"type": "string"}}}}}}},
              responses={201: {"model": WriteResponse, "description": "at least one document was added"},
                         **responses(401, 403, 413, 415, 422, 503, 507)})
    async def add_documents(request: Request, response: Response) -> dict:
        docs = await _documents_from_request(request, settings, known=_known)
        for doc in docs:  # text from uploads and form fields, held to the rule JSON bodies meet at the door
            require_storable(doc)
        outcomes = await _write(request, docs)
        for outcome in outcomes:
            metrics.writes.labels(outcome).inc()
        if "added" in outcomes:
            response.status_code = 201
        return {"documents": [{"id": d.id, "status": o} for d, o in zip(docs, outcomes)]}

    @app.get("/documents", response_model=DocumentPage, dependencies=read, responses=responses(401, 422, 503))
    async def list_documents(offset: Annotated[int, Query(ge=0)] = 0,
                             limit: Annotated[int, Query(ge=1, le=200)] = 50) -> dict:
        await run_in_threadpool(pipeline.refresh)
        docs = pipeline.index.live_documents()
        return {"documents": [summary(d) for d in docs[offset:offset + limit]], "total": len(docs),
                "offset": offset, "limit": limit}

    @app.get("/documents/{doc_id}", response_model=DocumentOut, dependencies=read,
             responses=responses(401, 404, 503))
    async def get_document(doc_id: str) -> dict:
        await run_in_threadpool(pipeline.refresh)
        doc = pipeline.index.document(doc_id)
        if doc is None:
            raise DocumentNotFoundError(f"no document with id {doc_id!r}")
        return {**summary(doc), "text": doc.text}

    @app.put("/documents/{doc_id}", response_model=WriteResponse, dependencies=write,
             responses={201: {"model": WriteResponse}, **responses(401, 403, 413, 415, 422, 503, 507)})
    async def replace_document(doc_id: DocId, item: DocumentIn, response: Response, http_request: Request) -> dict:
        if item.id is not None and item.id != doc_id:
            raise InvalidInputError(f"body id {item.id!r} differs from the path's {doc_id!r}")
        if item.url is not None:
            doc = await _off_loop(settings, _from_json, item, settings, doc_id=doc_id, known=_known)
        else:
            doc = _from_json(item, settings, doc_id=doc_id)
        (outcome,) = await _write(http_request, [doc])
        metrics.writes.labels(outcome).inc()
        if outcome == "added":
            response.status_code = 201
        return {"documents": [{"id": doc.id, "status": outcome}]}

    @app.delete("/documents/{doc_id}", status_code=204, dependencies=write,
                responses=responses(401, 403, 404, 503, 507))
    async def delete_document(doc_id: str) -> Response:
        await run_in_threadpool(pipeline.delete_document, doc_id)
        metrics.writes.labels("deleted").inc()
        return Response(status_code=204)
