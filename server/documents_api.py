"""The document API: add, list, read, replace and delete documents while the service answers.

`POST /documents` takes JSON (one document, or `{"documents": [...]}`) or a multipart upload
(`file`: .txt, .md, .html or .pdf; optional `id`, `title` fields). Upload names are labels only:
nothing is ever written to disk under a name a client chose.
"""
from __future__ import annotations

import hashlib
import io
import json
import re
from typing import Annotated, Any

from fastapi import FastAPI, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from rag.documents import Document, decode_text, document_id_for, html_to_text, make_document
from rag.errors import (DocumentError, DocumentNotFoundError, InputTooLargeError, InvalidInputError,
                        UnsupportedMediaError)
from rag.pipeline import Pipeline

from .auth import Access
from .errors import responses
from .schemas import Text, require_storable

DocId = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:#@+=-]*$")]
UPLOAD_TYPES = {".txt": "text", ".md": "markdown", ".markdown": "markdown", ".html": "html", ".htm": "html",
                ".pdf": "pdf"}


class DocumentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: DocId | None = None
    title: Annotated[Text, Field(max_length=500)] | None = None
    source: Annotated[Text, Field(max_length=1000)] | None = None
    text: Annotated[Text, Field(strict=True)]
    metadata: dict[str, Any] | None = None


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
            "content_hash": doc.content_hash, "metadata": doc.metadata}


def _from_json(item: DocumentIn, settings, doc_id: str | None = None) -> Document:
    if not item.text.strip():
        raise InvalidInputError("document text must not be empty")
    if len(item.text) > settings.max_document_chars:
        raise InputTooLargeError(f"document text is {len(item.text)} characters; the limit is "
                                 f"{settings.max_document_chars}")
    if item.metadata is not None:
        encoded = json.dumps(item.metadata, ensure_ascii=False)
        if len(encoded) > 10_000:
            raise InputTooLargeError("metadata is over 10000 characters of JSON")
        try:
            encoded.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidInputError("metadata contains an invalid Unicode character (a lone surrogate)") from None
    doc_id = doc_id or item.id or hashlib.sha256(item.text.encode("utf-8")).hexdigest()[:16]
    return make_document(item.text, source=item.source or f"api/{doc_id}", title=item.title, id=doc_id,
                         metadata=item.metadata)


def _safe_name(name: str) -> str:
    base = re.split(r"[\\/]", name or "")[-1]
    base = re.sub(r"[^\w.-]+", "_", base).strip("._") or "upload"
    return base[:200]


def parse_upload(name: str, data: bytes, *, doc_id: str | None, title: str | None, settings) -> Document:
    safe = _safe_name(name)
    suffix = ("." + safe.rsplit(".", 1)[-1].lower()) if "." in safe else ""
    kind = UPLOAD_TYPES.get(suffix)
    if kind is None:
        raise UnsupportedMediaError(f"unsupported file type {suffix or '(none)'}; upload .txt, .md, .html or .pdf")
    source = f"upload/{safe}"
    metadata: dict[str, Any] = {"format": kind, "filename": safe}
    if kind == "pdf":
        text = _pdf_text(data, safe)
    else:
        try:
            text, encoding = decode_text(data, safe)
        except DocumentError as exc:
            raise UnsupportedMediaError(str(exc)) from exc
        metadata["encoding"] = encoding
        if kind == "html":
            text, html_title = html_to_text(text)
            title = title or html_title or None
    if not text.strip():
        raise InvalidInputError(f"{safe}: no text in the file")
    if len(text) > settings.max_document_chars:
        raise InputTooLargeError(f"{safe}: {len(text)} characters of text; the limit is {settings.max_document_chars}")
    return make_document(text, source=source, title=title, id=doc_id or document_id_for(source), metadata=metadata)


def _pdf_text(data: bytes, name: str) -> str:
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            raise InvalidInputError(f"{name}: encrypted PDFs are not supported")
        return "\n\n".join((page.extract_text() or "").strip() for page in reader.pages).strip()
    except (PyPdfError, ValueError, KeyError, TypeError, OSError) as exc:
        raise InvalidInputError(f"{name}: not a readable PDF ({type(exc).__name__})") from exc


async def _documents_from_request(request: Request, settings) -> list[Document]:
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
        docs = [_from_json(item, settings) for item in items]
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
        docs = [await run_in_threadpool(parse_upload, upload.filename or "", data, doc_id=doc_id, title=title,
                                        settings=settings)]  # pypdf / HTML parsing: off the event loop
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
        docs = await _documents_from_request(request, settings)
        for doc in docs:  # text from uploads and form fields, held to the rule JSON bodies meet at the door
            require_storable(doc)
        outcomes = await run_in_threadpool(pipeline.put_documents, docs)
        for outcome in outcomes:
            metrics.writes.labels(outcome).inc()
        if "added" in outcomes:
            response.status_code = 201
        return {"documents": [{"id": d.id, "status": o} for d, o in zip(docs, outcomes)]}

    @app.get("/documents", response_model=DocumentPage, dependencies=read, responses=responses(401, 422, 503))
    async def list_documents(offset: Annotated[int, Query(ge=0)] = 0,
                             limit: Annotated[int, Query(ge=1, le=200)] = 50) -> dict:
        await run_in_threadpool(pipeline.refresh)
        docs = pipeline.index.documents
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
    async def replace_document(doc_id: DocId, item: DocumentIn, response: Response) -> dict:
        if item.id is not None and item.id != doc_id:
            raise InvalidInputError(f"body id {item.id!r} differs from the path's {doc_id!r}")
        doc = _from_json(item, settings, doc_id=doc_id)
        (outcome,) = await run_in_threadpool(pipeline.put_documents, [doc])
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
