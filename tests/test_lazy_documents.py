"""A segment's documents are made when first read (rag.lazy_documents), and read as the eager load did."""
from __future__ import annotations

import json

import numpy as np
import pytest

from rag.documents import Document
from rag.lazy_documents import LazyDocuments
from rag.manifest import load_index

FIELDS = [{"id": f"d{i}", "title": f"T{i}", "metadata": {"n": i}} for i in range(5)]
LINES = "".join(json.dumps(f) + "\n" for f in FIELDS).encode()


def test_rows_are_made_once_on_first_read_and_read_like_a_list():
    made = []
    docs = LazyDocuments(LINES, lambda row, f: made.append(row) or (row, f))
    assert len(docs) == 5 and made == []
    assert docs[2] == (2, FIELDS[2]) and docs[np.int64(2)] is docs[2] and made == [2]
    assert docs[-1] == (4, FIELDS[4]) and docs[1:3] == [(1, FIELDS[1]), (2, FIELDS[2])]
    with pytest.raises(IndexError):
        docs[5]
    assert list(docs) == [(i, f) for i, f in enumerate(FIELDS)] and sorted(made) == [0, 1, 2, 3, 4]
    assert [f for _, f in LazyDocuments(LINES.rstrip(b"\n"), lambda row, f: (row, f))] == FIELDS  # no last newline
    assert len(LazyDocuments(b"", lambda row, f: f)) == 0


def test_an_opened_segment_makes_no_document_until_one_is_read(fake_pipeline):
    pipeline = fake_pipeline()
    docs = [Document(id=f"doc{i}", source=f"s{i}.txt", title=f"Title {i}", text=f"Text number {i} about rivers.",
                     metadata={"i": i}) for i in range(20)]
    pipeline.ingest_documents(docs)
    pipeline.compact()
    index = load_index(pipeline.settings.index_dir)
    segment = index.segments[0].index
    lazy = segment.documents
    assert isinstance(lazy, LazyDocuments) and all(d is None for d in lazy._made)
    doc = index.document("doc7")  # a lookup by id builds the id map: every document is made
    assert (doc.id, doc.title, doc.text, doc.metadata) == ("doc7", "Title 7", docs[7].text, {"i": 7})
    assert [d.id for d in index.live_documents()] == [d.id for d in docs]
