"""Metadata filters: the syntax, its semantics on real documents, clear errors naming the bad part,
and bounded cost for pathological input (the 60 KB `*a*a*...` glob, deep nesting, huge lists)."""
from __future__ import annotations

import time

import pytest

from rag.documents import make_document
from rag.filters import MAX_CLAUSES, MAX_GLOB_WILDCARDS, MAX_GLOBS, Filter, FilterError

DOCS = [
    make_document("Apples.", source="seeds/a.txt", title="Apple report",
                  metadata={"author": "Ann", "year": 2021, "date": "2021-06-01", "tags": ["fruit", "red"],
                            "draft": False, "team": {"name": "orchard"}}),
    make_document("Bananas.", source="seeds/b.md", title="Banana notes",
                  metadata={"author": "Bob", "year": 2023, "date": "2023-01-15T10:00:00Z", "tags": ["fruit"]}),
    make_document("Cherries.", source="upload/c.pdf", title="Cherry paper",
                  metadata={"author": "Ann", "year": "2024", "draft": True, "score": 0.5}),
    make_document("Dates.", source="api/d", title="Dates", metadata={}),
]


def ids(raw) -> list[str]:
    return [d.source for d in Filter.parse(raw).matches(DOCS)]


@pytest.mark.parametrize("raw, expected", [
    ({"source": "seeds/*"}, ["seeds/a.txt", "seeds/b.md"]),  # today's glob form
    ({"source": ["*.pdf", "api/*"]}, ["upload/c.pdf", "api/d"]),
    ({"document_id": DOCS[1].id}, ["seeds/b.md"]),
    ({"document_id": [DOCS[0].id, DOCS[3].id]}, ["seeds/a.txt", "api/d"]),
    ({"metadata.author": "Ann"}, ["seeds/a.txt", "upload/c.pdf"]),
    ({"metadata.author": {"$ne": "Ann"}}, ["seeds/b.md", "api/d"]),
    ({"metadata.tags": "red"}, ["seeds/a.txt"]),  # a list-valued field matches by any item
    ({"metadata.tags": {"$in": ["red", "fruit"]}}, ["seeds/a.txt", "seeds/b.md"]),
    ({"metadata.tags": {"$nin": ["red"]}}, ["seeds/b.md", "upload/c.pdf", "api/d"]),
    ({"metadata.year": {"$gte": 2021, "$lt": 2023}}, ["seeds/a.txt"]),  # "2024" is a string: no number match
    ({"metadata.year": {"$gt": 2020}}, ["seeds/a.txt", "seeds/b.md"]),
    ({"metadata.date": {"$gte": "2022-01-01"}}, ["seeds/b.md"]),  # dates compare as dates, with time zones
    ({"metadata.date": {"$lt": "2023-01-15T12:00:00+01:00"}}, ["seeds/a.txt", "seeds/b.md"]),
    ({"metadata.draft": {"$exists": True}}, ["seeds/a.txt", "upload/c.pdf"]),
    ({"metadata.draft": {"$exists": False}}, ["seeds/b.md", "api/d"]),
    ({"metadata.draft": False}, ["seeds/a.txt"]),  # booleans are not numbers: False != 0
    ({"metadata.score": 0.5}, ["upload/c.pdf"]),
    ({"metadata.team.name": "orchard"}, ["seeds/a.txt"]),  # nested keys
    ({"title": {"$glob": "*notes*"}}, ["seeds/b.md"]),
    ({"title": "Dates"}, ["api/d"]),
    ({"$or": [{"metadata.author": "Bob"}, {"source": "api/*"}]}, ["seeds/b.md", "api/d"]),
    ({"$not": {"source": "seeds/*"}}, ["upload/c.pdf", "api/d"]),
    ({"source": "seeds/*", "metadata.author": "Ann"}, ["seeds/a.txt"]),  # side by side: and
    ({"$and": [{"metadata.author": "Ann"}, {"$not": {"metadata.draft": True}}]}, ["seeds/a.txt"]),
])
def test_filter_semantics(raw, expected):
    assert ids(raw) == expected


@pytest.mark.parametrize("raw, names", [
    ({"author": "Ann"}, ["filters.author", "metadata.author"]),
    ({"metadata.year": {"$gte": [1, 2]}}, ["filters.metadata.year.$gte", "string, number"]),
    ({"metadata.year": {"$between": [1, 2]}}, ["filters.metadata.year.$between", "unknown operator"]),
    ({"$or": [{"source": "a"}, 7]}, ["filters.$or[1]", "object"]),
    ({"$or": []}, ["filters.$or", "non-empty"]),
    ({"metadata.draft": {"$exists": "yes"}}, ["filters.metadata.draft.$exists", "true or false"]),
    ({"metadata.tags": {"$in": "red"}}, ["filters.metadata.tags.$in", "list"]),
    ({"metadata.x": {"$gt": True}}, ["filters.metadata.x.$gt"]),
    ({"$nor": []}, ["filters.$nor", "unknown operator"]),
    ({"metadata.": 1}, ["filters.metadata."]),
    ({"source": {}}, ["filters.source", "empty"]),
])
def test_malformed_filters_name_the_bad_part(raw, names):
    with pytest.raises(FilterError) as err:
        Filter.parse(raw)
    for name in names:
        assert name in str(err.value)


def test_pathological_filters_are_refused_or_cheap():
    started = time.process_time()
    with pytest.raises(FilterError, match="at most"):
        Filter.parse({"source": "*a" * 30_000})  # the 60 KB repro
    with pytest.raises(FilterError, match="`\\*`"):
        Filter.parse({"source": "*a" * 100})
    with pytest.raises(FilterError, match="glob patterns in one filter"):
        Filter.parse({"source": [f"*{i}" for i in range(MAX_GLOBS + 1)]})
    # The worst glob allowed, against a long source that almost matches: atomic groups, no backtracking.
    worst = Filter.parse({"source": "*a" * MAX_GLOB_WILDCARDS + "b"})
    long_doc = make_document("x", source="a" * 10_000)
    assert worst.matches([long_doc] * 50) == []
    deep: dict = {"source": "x"}
    for _ in range(50):
        deep = {"$not": deep}
    with pytest.raises(FilterError, match="nested"):
        Filter.parse(deep)
    with pytest.raises(FilterError, match=str(MAX_CLAUSES)):
        Filter.parse({"$or": [{"metadata.k": i} for i in range(MAX_CLAUSES + 1)]})
    with pytest.raises(FilterError, match="256 values"):
        Filter.parse({"metadata.k": {"$in": list(range(1000))}})
    with pytest.raises(FilterError, match="1000 characters"):
        Filter.parse({"metadata.k": "x" * 5000})
    assert time.process_time() - started < 5  # generous: the unbounded version took ~0.5 s per request


def test_empty_filters_mean_no_filter():
    assert Filter.parse(None) is None and Filter.parse({}) is None


def test_globs_agree_with_fnmatch_on_every_path():
    """The linear glob matcher (a newline-joined column scanned once) against Python's fnmatch."""
    import fnmatch
    import random

    rng = random.Random(7)
    strings = ["".join(rng.choice("ab/.c]!-") for _ in range(rng.randrange(0, 8))) for _ in range(2000)]
    strings += ["a[", "]x", "a\\b", "line\nbreak"]
    docs = [make_document("x", source=s or "empty", id=str(i)) for i, s in enumerate(strings)]

    class Snapshot:  # an index snapshot keeps encoded columns; a plain list does not
        pass

    for pattern in ["*", "a*", "*a", "a*b", "*a*b*", "a?c", "[ab]*", "[!a]*", "*.c", "**a", "?", "[]a]*",
                    "*[!b]", "a[", "*a*a*a*b", "[!]a]*", "[a-c]*", "*[!a-c]", "[!!]*?", "[!a-]*", "*[-]"]:
        expected = [fnmatch.fnmatchcase(d.source, pattern) for d in docs]
        parsed = Filter.parse({"source": pattern})
        assert list(parsed.document_mask(docs)) == expected, pattern
        assert list(parsed.document_mask(docs, owner=Snapshot())) == expected, pattern


def test_encoded_columns_live_and_die_with_their_snapshot():
    import gc

    from rag import columns

    class Snapshot:
        pass

    snap = Snapshot()
    f = Filter.parse({"metadata.author": "Ann", "metadata.year": {"$gt": 2020}})
    assert list(f.document_mask(DOCS, owner=snap)) == [True, False, False, False]
    assert len(columns._CACHE[id(snap)]) == 2
    for i in range(columns.MAX_CACHED_COLUMNS + 10):  # client-chosen keys cannot grow it without bound
        Filter.parse({f"metadata.k{i}": 1}).document_mask(DOCS, owner=snap)
    assert len(columns._CACHE[id(snap)]) == columns.MAX_CACHED_COLUMNS
    key = id(snap)
    del snap
    gc.collect()
    assert key not in columns._CACHE
