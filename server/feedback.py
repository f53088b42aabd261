"""Answer feedback: `POST /feedback` (thumbs up/down on an answer) and `GET /feedback` (export).

Each rating is one JSON line appended to `RAG_DATA_DIR/feedback/feedback.jsonl` and fsynced before
the response, so an acknowledged rating survives a crash; a torn last line (a crash mid-append) was
never acknowledged and is skipped when reading. Ratings are counted in `/metrics` by verdict.

The export is in `rag eval`'s JSONL layout (eval/datasets.py), so rated questions become an evaluation
set: a thumbs-up turns the answer it rated into the reference answer and its cited documents into the
gold documents; a thumbs-down is a question the user expected (a better) answer to, exported with
`"answerable": true` and no reference answer, for a person to fill in.

Posting feedback needs what reading needs (the widget carries no secret); exporting needs a write key,
since the questions people asked may be private.
"""
from __future__ import annotations

import json
import os
import re
import threading
import time
import uuid
from pathlib import Path
from typing import Annotated, Iterator, Literal

from fastapi import Depends, FastAPI, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import PlainTextResponse
from prometheus_client import Counter
from pydantic import BaseModel, ConfigDict, Field

from rag.errors import InputTooLargeError

from .auth import require_read, require_write
from .schemas import Text

MAX_RECORD_BYTES = 48 * 1024  # one stored line, whatever the request body limit is
_MARKER = re.compile(r"\s*\[\d+(?:\s*,\s*\d+)*\]")


class FeedbackCitation(BaseModel):
    """A citation as /ask returned it; only what identifies the evidence is kept."""
    model_config = ConfigDict(extra="ignore")
    id: int | None = None
    document_id: Annotated[Text, Field(max_length=200)]
    chunk_id: Annotated[Text, Field(max_length=220)] | None = None
    title: Annotated[Text, Field(max_length=500)] | None = None
    source: Annotated[Text, Field(max_length=1000)] | None = None
    text: Annotated[Text, Field(max_length=5000)] | None = None
    start: int | None = Field(None, ge=0)
    end: int | None = Field(None, ge=0)


class FeedbackIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    question: Annotated[Text, Field(min_length=1, max_length=4000)]
    answer: Annotated[Text, Field(max_length=20000)]
    citations: list[FeedbackCitation] = Field(default_factory=list, max_length=50)
    verdict: Literal["up", "down"]
    comment: Annotated[Text, Field(max_length=2000)] | None = None
    abstained: bool | None = Field(None, description="Whether the rated reply was an abstention.")
    generator: Annotated[str, Field(max_length=50)] | None = None
    supersedes: Annotated[str, Field(pattern=r"^[0-9a-f]{16}$")] | None = Field(
        None, description="The id of an earlier rating this one replaces (the widget sends the rating at once, "
                          "then again with the comment); replaced ratings are left out of the export and counts.")


class FeedbackAck(BaseModel):
    id: str
    verdict: str


class FeedbackStore:
    """Append-only JSONL; one writer lock per process (appends under O_APPEND are atomic per line)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def append(self, record: dict) -> None:
        line = (json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")
        if len(line) > MAX_RECORD_BYTES:
            raise InputTooLargeError(f"feedback record is over the {MAX_RECORD_BYTES} byte limit")
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                size = os.fstat(fd).st_size
                if size and os.pread(fd, 1, size - 1) != b"\n":  # a torn line from a crash: end it first
                    line = b"\n" + line
                os.write(fd, line)
                os.fsync(fd)
            finally:
                os.close(fd)

    def records(self) -> Iterator[dict]:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return
        for line in raw.splitlines():
            try:
                obj = json.loads(line)
            except ValueError:  # a torn last line: never acknowledged
                continue
            if isinstance(obj, dict) and obj.get("verdict") in ("up", "down"):
                yield obj


def store_for(data_dir: Path) -> FeedbackStore:
    return FeedbackStore(Path(data_dir) / "feedback" / "feedback.jsonl")


def as_eval_item(record: dict) -> dict:
    """One stored rating as a line of `rag eval`'s JSONL dataset."""
    cited = list(dict.fromkeys(c["document_id"] for c in record.get("citations", []) if c.get("document_id")))
    item = {"id": f"feedback-{record['id']}", "question": record["question"]}
    if record["verdict"] == "up" and not record.get("abstained"):
        item.update(answers=[_MARKER.sub("", record["answer"]).strip()], gold_documents=cited, answerable=True)
    elif record["verdict"] == "up":  # a confirmed abstention: the documents do not answer this
        item.update(answers=[], gold_documents=[], answerable=False)
    else:  # the user expected a (better) answer: a question to label
        item.update(answers=[], gold_documents=[], answerable=True, rejected_answer=record["answer"])
    item.update(verdict=record["verdict"], comment=record.get("comment"), rated_at=record.get("ts"))
    return item


def current_records(store: FeedbackStore) -> list[dict]:
    """Every rating not replaced by a later one, oldest first."""
    records = list(store.records())
    replaced = {r["supersedes"] for r in records if r.get("supersedes")}
    return [r for r in records if r["id"] not in replaced]


def export_lines(store: FeedbackStore, verdict: str = "all") -> Iterator[str]:
    for record in current_records(store):
        if verdict in ("all", record["verdict"]):
            yield json.dumps(as_eval_item(record), ensure_ascii=False) + "\n"


def register(app: FastAPI, pipeline, metrics) -> FeedbackStore:
    settings = pipeline.settings
    store = store_for(settings.data_dir)
    counter = Counter("rag_feedback", "Answer ratings received, by verdict", ["verdict"], registry=metrics.registry)
    for v in ("up", "down"):
        counter.labels(v)  # both series exist from the start, at 0

    @app.post("/feedback", status_code=201, response_model=FeedbackAck,
              dependencies=[Depends(require_read(settings))])
    async def post_feedback(body: FeedbackIn) -> dict:
        record = {"id": uuid.uuid4().hex[:16], "ts": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                  **body.model_dump(exclude_none=True)}
        await run_in_threadpool(store.append, record)
        if body.supersedes is None:  # a comment added to a rating is not a second rating
            counter.labels(body.verdict).inc()
        return {"id": record["id"], "verdict": body.verdict}

    @app.get("/feedback", dependencies=[Depends(require_write(settings))], response_class=PlainTextResponse,
             responses={200: {"content": {"application/x-ndjson": {}},
                              "description": "One `rag eval` dataset line per rating."}})
    async def export_feedback(format: Literal["jsonl"] = "jsonl",
                              verdict: Annotated[Literal["up", "down", "all"], Query()] = "all"):
        text = await run_in_threadpool(lambda: "".join(export_lines(store, verdict)))
        return PlainTextResponse(text, media_type="application/x-ndjson",
                                 headers={"Content-Disposition": 'attachment; filename="feedback.jsonl"'})

    return store
