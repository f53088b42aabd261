"""Filter evaluation time at scale: `python -m eval.bench_filters [--documents N]` prints a table.

Builds N synthetic documents with typical metadata (author, year, ISO date, tags, a nested key) and
times `Filter.document_mask` (the per-request cost retrieval pays before searching) for a set of filters,
from the common to the worst the bounds allow."""
from __future__ import annotations

import argparse
import random
import statistics
import time

from rag.documents import Document
from rag.filters import MAX_CLAUSES, MAX_GLOB_WILDCARDS, MAX_GLOBS, Filter

FILTERS = {
    "source glob": {"source": "corpus/section-1*/*"},
    "document_id (5 ids)": {"document_id": ["0", "17", "99", "5000", "x"]},
    "metadata equality": {"metadata.author": "author-7"},
    "numeric range": {"metadata.year": {"$gte": 2015, "$lt": 2020}},
    "date range": {"metadata.date": {"$gte": "2020-01-01", "$lt": "2021-01-01"}},
    "tags $in (list field)": {"metadata.tags": {"$in": ["t1", "t5", "t9"]}},
    "exists + not": {"metadata.draft": {"$exists": True}, "$not": {"metadata.team.name": "red"}},
    "and/or mix (6 clauses)": {"$or": [{"metadata.author": "author-1", "metadata.year": {"$gt": 2010}},
                                        {"source": "*7.txt", "metadata.tags": "t3"},
                                        {"title": {"$glob": "*report 12*"}, "metadata.draft": False}]},
    f"worst allowed ({MAX_GLOBS} globs of {MAX_GLOB_WILDCARDS} stars)": {
        "$or": [{"source": "*a" * MAX_GLOB_WILDCARDS + str(i)} for i in range(MAX_GLOBS)]},
    f"worst allowed ({MAX_CLAUSES} range clauses)": {
        "$or": [{"metadata.year": {"$gt": 2000 + i}} for i in range(MAX_CLAUSES)]},
}


class Snapshot:
    pass


def documents(n: int, seed: int = 0) -> list[Document]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        meta = {"author": f"author-{rng.randrange(50)}", "year": rng.randrange(2000, 2025),
                "date": f"{rng.randrange(2000, 2025)}-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}",
                "tags": [f"t{rng.randrange(20)}" for _ in range(rng.randrange(0, 4))],
                "team": {"name": rng.choice(["red", "blue", "green"])}}
        if i % 3 == 0:
            meta["draft"] = bool(i % 2)
        out.append(Document(id=str(i), source=f"corpus/section-{i % 40}/doc-{i}.txt", title=f"report {i}",
                            text="", metadata=meta))
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--documents", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    docs = documents(args.documents)
    doc_row = {d.id: i for i, d in enumerate(docs)}
    print(f"{args.documents} documents; median of {args.repeat} runs\n")
    print("| filter | matches | parse ms | first on a snapshot ms | later ms |\n|---|---:|---:|---:|---:|")
    for name, raw in FILTERS.items():
        t0 = time.perf_counter()
        f = Filter.parse(raw)
        parse_ms = (time.perf_counter() - t0) * 1000
        snapshot = Snapshot()  # stands in for an index snapshot: encoded columns live as long as it does
        t0 = time.perf_counter()
        mask = f.document_mask(docs, doc_row, owner=snapshot)
        first_ms = (time.perf_counter() - t0) * 1000
        times = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            mask = f.document_mask(docs, doc_row, owner=snapshot)
            times.append((time.perf_counter() - t0) * 1000)
        print(f"| {name} | {int(mask.sum())} | {parse_ms:.2f} | {first_ms:.1f} | {statistics.median(times):.1f} |")


if __name__ == "__main__":
    main()
