"""The JSON record of a document: one codec for snapshots (documents.jsonl) and the journal."""
from __future__ import annotations

import json
from typing import Any

from .documents import Document


def document_record(doc) -> dict[str, Any]:
    return {"id": doc.id, "source": doc.source, "title": doc.title, "metadata": doc.metadata, "text": doc.text}


def document_from_record(r: dict[str, Any]) -> Document:
    return Document(id=r["id"], source=r["source"], title=r["title"], text=r["text"], metadata=r.get("metadata") or {})


def document_line(doc) -> bytes:
    """A document as one JSON line (UTF-8, newline included)."""
    return (json.dumps(document_record(doc), ensure_ascii=False) + "\n").encode("utf-8")
