"""`rag`: ingest, ask, serve and evaluate from the command line. Flags override `RAG_*` settings."""
from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from pathlib import Path


def _settings(args: argparse.Namespace):
    """The `RAG_*` settings with the flags' overrides, for the collection named by --collection."""
    from rag.config import Settings

    overrides = {k: v for k, v in {
        "data_dir": getattr(args, "data_dir", None),
        "embed_model": getattr(args, "model", None),
        "host": getattr(args, "host", None),
        "port": getattr(args, "port", None),
    }.items() if v is not None}
    settings = Settings(**overrides)
    collection = getattr(args, "collection", None)
    if collection and collection != "default":
        from rag.collections import Collections

        settings = Collections(settings).settings_for(collection)
    return settings


def cmd_ingest(args: argparse.Namespace) -> int:
    from rag.progress import progress_bar
    from rag.pipeline import Pipeline

    if not args.paths and not args.rebuild:
        print("error: name files or directories to ingest (or use --rebuild alone to re-embed the stored "
              "documents)", file=sys.stderr)
        return 2
    settings = _settings(args)
    address = getattr(args, "cluster", None) or settings.ray_address
    if address:
        return _cluster_ingest(args, settings, address)
    with Pipeline(settings) as pipeline:
        bar, update = progress_bar("embedding")
        try:
            report = pipeline.ingest(args.paths, rebuild=args.rebuild, progress=update)
        finally:
            bar.close()
    failed = [s for s in report.skipped if s.failed]
    for s in report.skipped:
        print(f"{'failed' if s.failed else 'skipped'} {s.path}: {s.kind}: {s.reason}", file=sys.stderr)
    for source in report.removed:
        print(f"removed {source}: its file is gone", file=sys.stderr)
    if report.rebuilt:
        print(f"re-embedded every stored document: settings changed ({report.rebuilt})", file=sys.stderr)
    print(f"ingested: {report.added} added, {report.updated} updated, {report.unchanged} unchanged, "
          f"{len(report.removed)} removed, {len(report.skipped)} skipped ({len(failed)} failed); index holds "
          f"{report.documents} documents, {report.chunks} chunks at {pipeline.settings.index_dir}")
    return 1 if failed else 0  # something named could not be ingested: say so to scripts too


def cmd_check(args: argparse.Namespace) -> int:
    """Full checksums of every segment and the journal's records; `--repair` rebuilds damaged segments."""
    from rag.errors import IndexCorruptError
    from rag.pipeline import Pipeline

    settings = _settings(args).model_copy(update={"background_merge": False})
    with Pipeline(settings) as pipeline:
        pipeline.load(build_from_seeds=False)
        maintenance = pipeline.store.maintenance
        found = maintenance.verify()
        index = pipeline.index
        print(f"{len(index.segments)} segments, {index.document_count} documents, {index.chunk_count} chunks "
              f"at {settings.index_dir}")
        for name, reason, _ in index.damaged:
            print(f"damaged segment {name}: {reason}", file=sys.stderr)
        journal = pipeline.journal.damage()
        for record in journal:
            print(f"damaged journal record: {record.describe()}", file=sys.stderr)
        if args.repair and index.damaged:
            try:
                repaired = maintenance.repair()
            except IndexCorruptError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 1
            print(f"repaired {len(repaired)} segment(s) from their stored documents: {', '.join(repaired)}")
        ok = not pipeline.index.damaged and not journal
        print("index is intact" if ok and not found else "index repaired" if ok else
              "damage found (run `rag check --repair`)")
        return 0 if ok else 1


def _cluster_ingest(args: argparse.Namespace, settings, address: str) -> int:
    from cluster.ingestion import ingest
    from cluster.serving import connect

    if args.rebuild or getattr(args, "collection", None):
        print("error: --cluster ingests files into the default collection; --rebuild and --collection are "
              "single-machine options", file=sys.stderr)
        return 2
    shards = args.shards or settings.cluster_shards
    connect(settings, address)
    report = ingest(settings, args.paths, shards)
    for s in report.skipped:
        print(f"{'failed' if s.failed else 'skipped'} {s.path}: {s.kind}: {s.reason}", file=sys.stderr)
    nodes = ", ".join(f"{n}: {c}" for n, c in sorted(report.embedded_by_node.items()))
    print(f"embedded {report.texts} texts in {report.embed_seconds:.1f} s across the cluster ({nodes}); "
          f"built {shards} shards in {report.build_seconds:.1f} s", file=sys.stderr)
    for r in report.shards:
        print(f"shard {r['shard']}: {r['documents']} documents, {r['chunks']} chunks at {r['data_dir']}",
              file=sys.stderr)
    failed = [s for s in report.skipped if s.failed]
    print(f"ingested: {report.total('added')} added, {report.total('updated')} updated, "
          f"{report.total('unchanged')} unchanged, {report.total('removed')} removed, {len(report.skipped)} skipped "
          f"({len(failed)} failed); {shards} shards hold {report.total('documents')} documents, "
          f"{report.total('chunks')} chunks")
    return 1 if failed else 0


def cmd_ask(args: argparse.Namespace) -> int:
    settings = _settings(args)
    result = None
    if not args.local and not args.collection:  # a running server on the same data dir answers in milliseconds
        from server.startup import ask_running_server

        result = ask_running_server(settings, args.question, args.top_k, args.generator)
    if result is None:
        from rag.pipeline import Pipeline
        from server.startup import first_start_notes

        for note in first_start_notes(settings):
            print(note, file=sys.stderr)
        with Pipeline(settings) as pipeline:
            pipeline.load()
            result = pipeline.ask(args.question, args.top_k, generator=args.generator).model_dump(
                mode="json", exclude_none=True)
    if args.json:
        print(json.dumps(result, ensure_ascii=False, indent=2))
        return 0
    print(result["answer"])
    if result.get("fallback"):
        print(f"\n(answered by extractive fallback: {result['fallback']['reason']})")
    for c in result["citations"]:
        print(f"\n[{c['id']}] {c['source']} [{c['start']}:{c['end']}]\n    \"{c['text']}\"")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from server.app import create_app
    from server.observability import configure_logging
    from server.serving import uvicorn_options

    settings = _settings(args)
    configure_logging(settings.log_json, args.log_level)
    address = args.cluster or settings.ray_address
    if address:
        from cluster import serving
        from cluster.app import create_cluster_app

        serving.connect(settings, address)
        plan = serving.deploy(settings)
        pipeline = serving.pipeline(settings, plan)
        app = create_cluster_app(pipeline, replicas=lambda: serving.replicas(plan))
        try:
            uvicorn.run(app, **uvicorn_options(settings, log_level=args.log_level, access_log=False))
        finally:
            pipeline.close()  # the shards keep serving under Ray Serve; `serve shutdown` stops them
        return 0
    app = create_app(settings=settings)
    # Our own access log carries request ids; uvicorn's would duplicate it.
    uvicorn.run(app, **uvicorn_options(settings, log_level=args.log_level, access_log=False))
    return 0


def cmd_feedback_export(args: argparse.Namespace) -> int:
    from server.feedback import export_lines, store_for

    lines = export_lines(store_for(_settings(args).data_dir), args.verdict)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            n = sum(1 for line in lines if f.write(line) or True)
        print(f"wrote {n} rated questions to {args.out}", file=sys.stderr)
    else:
        for line in lines:
            sys.stdout.write(line)
    return 0


def _eval_command(module: str):
    """`rag eval`, `rag bench`, `rag bench-scale`: the eval module's `run(args, settings)`."""
    def run(args: argparse.Namespace) -> int:
        return importlib.import_module(module).run(args, _settings(args))

    return run


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rag", description="Retrieval-augmented answers with exact citations.")
    parser.add_argument("--data-dir", type=Path, help="where the index lives (RAG_DATA_DIR)")
    parser.add_argument("--model", help="embedding model path or name (RAG_EMBED_MODEL)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("ingest", help="add or update documents (files or directories)")
    p.add_argument("paths", nargs="*", help="files (.txt .md .html .pdf .docx .pptx), directories of them, or "
                   "http(s) URLs")
    p.add_argument("--collection", help="a named collection (made with POST /collections); default: the default one")
    p.add_argument("--rebuild", action="store_true", help="re-embed everything: after changing the model, or to "
                   "recover a damaged index from its stored documents (no PATH needed)")
    p.add_argument("--cluster", metavar="ADDRESS", help="ingest on a Ray cluster (its head's host:port; "
                   "RAG_RAY_ADDRESS): embed across its nodes, build each shard on its node (docs/cluster.md)")
    p.add_argument("--shards", type=int, help="shards for --cluster (RAG_CLUSTER_SHARDS; default 2)")
    p.set_defaults(func=cmd_ingest)

    p = sub.add_parser("check", help="verify every index file's checksum and the journal; --repair rebuilds "
                       "damaged segments from their stored documents")
    p.add_argument("--repair", action="store_true", help="rebuild damaged segments (re-embeds their documents)")
    p.add_argument("--collection", help="a named collection; default: the default one")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("ask", help="answer a question with citations")
    p.add_argument("question")
    p.add_argument("--json", action="store_true", help="print the API's JSON response")
    p.add_argument("--top-k", type=int, default=None)
    p.add_argument("--generator", default=None, help="extractive or openai")
    p.add_argument("--collection", help="a named collection; default: the default one")
    p.add_argument("--local", action="store_true", help="answer in this process even when a server on "
                   "RAG_HOST:RAG_PORT serves the same data dir (by default that server answers: no model loading)")
    p.set_defaults(func=cmd_ask)

    p = sub.add_parser("serve", help="run the HTTP API")
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.add_argument("--log-level", default="info")
    p.add_argument("--cluster", metavar="ADDRESS", help="serve the shards ingested with --cluster from a Ray "
                   "cluster (RAG_RAY_ADDRESS), each a Ray Serve deployment (docs/cluster.md)")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("feedback", help="the widget's answer ratings")
    fb = p.add_subparsers(dest="feedback_command", required=True)
    p = fb.add_parser("export", help="ratings as a `rag eval` JSONL dataset")
    p.add_argument("--verdict", choices=("up", "down", "all"), default="all")
    p.add_argument("--out", type=Path, help="file to write (default: standard output)")
    p.set_defaults(func=cmd_feedback_export)

    from eval.bench import add_arguments as add_bench_arguments
    from eval.cli import add_arguments as add_eval_arguments
    from eval.scale import add_arguments as add_scale_arguments

    p = sub.add_parser("eval", help="evaluate retrieval and answers on a dataset")
    add_eval_arguments(p)
    p.set_defaults(func=_eval_command("eval.cli"))

    p = sub.add_parser("bench", help="measure ingest, query and HTTP speed; print a table (and JSON with --out)")
    add_bench_arguments(p)
    p.set_defaults(func=_eval_command("eval.bench"))

    p = sub.add_parser("bench-scale", help="build a synthetic index of a million chunks and measure build, "
                                             "memory, disk, search latency and recall")
    add_scale_arguments(p)
    p.set_defaults(func=_eval_command("eval.scale"))
    return parser


def main(argv: list[str] | None = None) -> int:
    # The process's environment is the application's to set, not the library's: the model ships in a
    # package, so the Hugging Face Hub is never asked, and tokenizers must not fork-warn in servers.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = build_parser().parse_args(argv)
    from rag.errors import RagError

    try:
        return args.func(args)
    except RagError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:  # settings or model problems, already worded for people
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
