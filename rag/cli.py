"""`rag`: ingest, ask, serve and evaluate from the command line. Flags override `RAG_*` settings."""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _settings(args: argparse.Namespace):
    from .config import Settings

    overrides = {k: v for k, v in {
        "data_dir": getattr(args, "data_dir", None),
        "embed_model": getattr(args, "model", None),
        "host": getattr(args, "host", None),
        "port": getattr(args, "port", None),
    }.items() if v is not None}
    return Settings(**overrides)


def _progress_bar(desc: str):
    from tqdm import tqdm

    bar = tqdm(total=0, desc=desc, unit="text", file=sys.stderr, dynamic_ncols=True,
                mininterval=0.2 if sys.stderr.isatty() else 5.0)

    def update(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    return bar, update


def cmd_ingest(args: argparse.Namespace) -> int:
    from .pipeline import Pipeline

    if not args.paths and not args.rebuild:
        print("error: name files or directories to ingest (or use --rebuild alone to re-embed the stored "
              "documents)", file=sys.stderr)
        return 2
    pipeline = Pipeline(_settings(args))
    bar, update = _progress_bar("embedding")
    try:
        report = pipeline.ingest(args.paths, rebuild=args.rebuild, progress=update)
    finally:
        bar.close()
    failed = [s for s in report.skipped if s.failed]
    for s in report.skipped:
        print(f"{'failed' if s.failed else 'skipped'} {s.path}: {s.kind}: {s.reason}", file=sys.stderr)
    if report.rebuilt:
        print(f"re-embedded every stored document: settings changed ({report.rebuilt})", file=sys.stderr)
    print(f"ingested: {report.added} added, {report.updated} updated, {report.unchanged} unchanged, "
          f"{report.removed} removed, {len(report.skipped)} skipped ({len(failed)} failed); index holds "
          f"{report.documents} documents, {report.chunks} chunks at {pipeline.settings.index_dir}")
    return 1 if failed else 0  # something named could not be ingested: say so to scripts too


def cmd_ask(args: argparse.Namespace) -> int:
    from .pipeline import Pipeline

    pipeline = Pipeline(_settings(args))
    pipeline.load()
    result = pipeline.ask(args.question, args.top_k, generator=args.generator)
    if args.json:
        print(json.dumps(result.to_dict(), ensure_ascii=False, indent=2))
        return 0
    print(result.answer.text)
    if result.answer.fallback:
        print(f"\n(answered by extractive fallback: {result.answer.fallback['reason']})")
    for c in result.answer.citations:
        print(f"\n[{c.id}] {c.source} [{c.start}:{c.end}]\n    \"{c.text}\"")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from server.app import create_app
    from server.observability import configure_logging

    settings = _settings(args)
    configure_logging(settings.log_json, args.log_level)
    app = create_app(settings=settings)
    # Our own access log carries request ids; uvicorn's would duplicate it.
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=args.log_level, access_log=False)
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from eval.cli import run

    return run(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rag", description="Retrieval-augmented answers with exact citations.")
    parser.add_argument("--data-dir", type=Path, help="where the index lives (RAG_DATA_DIR)")
    parser.add_argument("--model", help="embedding model path or name (RAG_EMBED_MODEL)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("ingest", help="add or update documents (files or directories)")
    p.add_argument("paths", nargs="*", help="files (.txt .md .html .pdf .docx .pptx), directories of them, or "
                   "http(s) URLs")
    p.add_argument("--rebuild", action="store_true", help="re-embed everything: after changing the model, or to "
                   "recover a damaged index from its stored documents (no PATH needed)")
    p.set_defaults(func=cmd_ingest)

    p = sub.add_parser("ask", help="answer a question with citations")
    p.add_argument("question")
    p.add_argument("--json", action="store_true", help="print the API's JSON response")
    p.add_argument("--top-k", type=int, default=None)
    p.add_argument("--generator", default=None, help="extractive or openai")
    p.set_defaults(func=cmd_ask)

    p = sub.add_parser("serve", help="run the HTTP API")
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.add_argument("--log-level", default="info")
    p.set_defaults(func=cmd_serve)

    try:
        from eval.cli import add_arguments
    except ImportError:  # evaluation is part of the distribution; tolerate partial checkouts
        add_arguments = None
    if add_arguments is not None:
        p = sub.add_parser("eval", help="evaluate retrieval and answers on a dataset")
        add_arguments(p)
        p.set_defaults(func=cmd_eval)

    try:
        from eval.bench import add_arguments as add_bench_arguments, run as run_bench
    except ImportError:
        add_bench_arguments = None
    if add_bench_arguments is not None:
        p = sub.add_parser("bench", help="measure ingest, query and HTTP speed; print a table (and JSON with --out)")
        add_bench_arguments(p)
        p.set_defaults(func=run_bench)
        from eval.scale import add_arguments as add_scale_arguments, run as run_scale

        p = sub.add_parser("bench-scale", help="build a synthetic index of a million chunks and measure build, "
                                                 "memory, disk, search latency and recall")
        add_scale_arguments(p)
        p.set_defaults(func=run_scale)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .errors import RagError

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
