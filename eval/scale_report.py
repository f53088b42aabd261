"""The Markdown table of a `rag bench-scale` run (docs/scale.md shows one)."""
from __future__ import annotations

import json


def markdown(r: dict) -> str:
    b = r.get("build", {})
    s, p = r["server"], r["in_process"]
    http = {h["endpoint"]: h["latency_ms"] for h in s["http"]}
    rows = [
        ("chunks / sentences / documents", f"{b.get('chunks', '?')} / {b.get('sentences', '?')} / {b.get('documents', '?')}"),
        ("segments / vector indexes", f"{b.get('segments', '?')} / {json.dumps(b.get('vector_index', {}))}"),
        ("build without embedding (chunking, BM25, FAISS, snapshot)",
         f"{b.get('build_without_embedding_s', '?')} s (+ {b.get('stand_in_embedder_s', '?')} s in the pool "
         f"stand-in), peak RSS {b.get('build_peak_rss_mib', '?')} MiB"),
        ("index on disk", f"{r['index_bytes'] / 2**30:.2f} GiB"),
        ("`rag serve` cold start to ready", f"{s['cold_start_readyz_s']} s"),
        ("serving RSS at ready / peak", f"{s['rss_at_ready_mib']} / {s['peak_rss_mib']} MiB"),
        ("HTTP /search p50 / p95 (1 client)", f"{http['/search']['p50']} / {http['/search']['p95']} ms"),
        ("HTTP /ask p50 / p95 (1 client)", f"{http['/ask']['p50']} / {http['/ask']['p95']} ms"),
        ("query embedding p50", f"{p['query_embedding_ms']['p50']} ms"),
        ("dense (FAISS) p50 / p95", f"{p['dense_ms']['p50']} / {p['dense_ms']['p95']} ms"),
        ("BM25 p50 / p95", f"{p['bm25_ms']['p50']} / {p['bm25_ms']['p95']} ms"),
        ("hybrid search p50 / p95 (no embedding)", f"{p['hybrid_search_ms']['p50']} / {p['hybrid_search_ms']['p95']} ms"),
        ("dense recall@10 vs exact", f"{p['dense_recall_at_10']}"),
        ("exact (flat) search p50, same vectors", f"{p['exact_search_ms']['p50']} ms"),
    ]
    rows += write_rows(r)
    lines = ["| measure | value |", "|---|---|"] + [f"| {k} | {v} |" for k, v in rows]
    lines += ["", "| nprobe | recall@10 | search p50 ms | p95 ms |", "|---|---|---|---|"]
    for row in p["recall_sweep"]:
        mark = " (default)" if row["default"] else ""
        lines.append(f"| {row['nprobe']}{mark} | {row['recall_at_10']} | {row['search_ms']['p50']} | "
                     f"{row['search_ms']['p95']} |")
    return "\n".join(lines)


def write_rows(r: dict) -> list[tuple[str, str]]:
    """The write phase: latency on the large and the small index, and against embedding alone."""
    large = r["server"].get("writes")
    small = r.get("small", {}).get("server", {}).get("writes")
    floor = r.get("embedding_floor_ms")
    if not large:
        return []
    w, d, q = large["write_ms"], large["delete_ms"], large["queries_during_writes_ms"]
    rows = [("one-paragraph write over HTTP p50 / p95 (acknowledged, then visible)", f"{w['p50']} / {w['p95']} ms"
             + (f" (after {large['waited_for_checksums_s']} s waiting for the background checksums)"
                if large.get("waited_for_checksums_s") is not None else "")),
            *([("the same while a client queries: p50 / p95", f"{large['write_ms_while_querying']['p50']} / "
                                                             f"{large['write_ms_while_querying']['p95']} ms")]
              if large.get("write_ms_while_querying") else []),
            ("delete over HTTP p50 / p95", f"{d['p50']} / {d['p95']} ms"),
            ("queries while writing: /search p50 / p95 (1 client)", f"{q['p50']} / {q['p95']} ms"),
            ("merges during the write phase (seconds merging)", f"{large['merges']} ({large['merge_seconds']} s)")]
    if large.get("queries_during_merges_ms"):
        m = large["queries_during_merges_ms"]
        rows.append(("queries during a merge: p50 / p95 (n)", f"{m['p50']} / {m['p95']} ms ({m['n']})"))
    merge = r["server"].get("merge")
    if merge and merge.get("queries_during_ms"):
        before, during = merge["queries_before_ms"], merge["queries_during_ms"]
        rows.append((f"/search p50 / p95 before and during a merge of the whole index ({merge['chunks_merged']} "
                     f"chunks, {merge['merge_seconds']} s{'' if merge['merge_finished'] else ', stopped'}; n)",
                     f"{before['p50']} / {before['p95']} ms, {during['p50']} / {during['p95']} ms ({during['n']}): "
                     f"{merge['during_over_before_p50']}x"))
    if floor:
        rows.append(("embedding the same documents alone, in process, p50", f"{floor['p50']} ms"))
        rows.append(("write p50 / embedding p50", f"{w['p50'] / floor['p50']:.2f}x"))
    if small:
        sw = small["write_ms"]
        rows.append((f"write p50 on the small index ({r['small'].get('chunks', '?')} chunks) / delete p50",
                     f"{sw['p50']} / {small['delete_ms']['p50']} ms"))
        rows.append(("write p50 large / small", f"{w['p50'] / sw['p50']:.2f}x"))
    not_visible = large["not_visible_after_ack"] + (small["not_visible_after_ack"] if small else 0)
    rows.append(("writes not visible to the next query / errors", f"{not_visible} / {large['errors']}"))
    return rows
