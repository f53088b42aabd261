"""`rag eval`: run a dataset through the pipeline (in-process or over HTTP) and report."""
from __future__ import annotations

import argparse
import hashlib
import sys
import time
from pathlib import Path

from .datasets import Dataset, DatasetError, hold_out_articles, load_dataset

# Named variants for --compare; `key=value` pairs work too (in-process, any setting).
VARIANTS: dict[str, dict[str, str]] = {
    "default": {},
    "dense": {"retrieval_mode": "dense"},
    "lexical": {"retrieval_mode": "lexical"},
    "hybrid": {"retrieval_mode": "hybrid", "fusion": "weighted"},
    "hybrid-rrf": {"retrieval_mode": "hybrid", "fusion": "rrf"},
    "extractive": {"generator": "extractive"},
    "openai": {"generator": "openai"},
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dataset", type=Path, help="JSONL questions or SQuAD JSON (.gz fine)")
    p.add_argument("--corpus", nargs="+", type=Path, help="documents to index for a JSONL dataset "
                   "(default: the served index; SQuAD brings its own paragraphs)")
    p.add_argument("--url", help="evaluate a running server over HTTP instead of in-process")
    p.add_argument("--concurrency", type=int, default=1, help="parallel requests (default 1)")
    p.add_argument("--limit", type=int, help="first N questions only (fixed order)")
    p.add_argument("--limit-articles", type=int, help="SQuAD: first N articles only")
    p.add_argument("--holdout-every", type=int, help="SQuAD: remove every N-th article from the corpus; its "
                   "questions become unanswerable (balanced with answerable ones)")
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--compare", help="comma-separated variants: " + ", ".join(VARIANTS) +
                   ", or key=value settings joined with '+', e.g. dense_weight=0.5+fusion=rrf")
    p.add_argument("--out", type=Path, help="write report.json, report.md, per_question.jsonl and plots here")
    p.add_argument("--judge", choices=("auto", "on", "off"), default="auto",
                   help="LLM-judged faithfulness, answer relevance, context precision and recall (Ragas' "
                        "definitions) with the configured RAG_OPENAI_* model; auto: when RAG_GENERATOR=openai")


def parse_variant(spec: str) -> dict[str, str]:
    if spec in VARIANTS:
        return VARIANTS[spec]
    out = {}
    for part in spec.split("+"):
        if "=" not in part:
            raise DatasetError(f"unknown variant {spec!r}; named ones: {', '.join(VARIANTS)}")
        k, v = part.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def _corpus_hash(dataset: Dataset) -> str:
    h = hashlib.sha256()
    for d in dataset.corpus:
        h.update(d.id.encode())
        h.update(b"\0")
        h.update(d.text.encode())
    return h.hexdigest()[:16]


def _pipeline_for(dataset: Dataset, args: argparse.Namespace, settings):
    from rag.documents import load_paths
    from rag.pipeline import Pipeline

    if args.corpus:
        loaded = load_paths(args.corpus)
        for s in loaded.skipped:
            print(f"skipped {s.path}: {s.reason}", file=sys.stderr)
        dataset.corpus = loaded.documents
    if not dataset.corpus:
        pipeline = Pipeline(settings)
        pipeline.load()
        return pipeline
    data_dir = settings.data_dir / "eval" / _corpus_hash(dataset)
    pipeline = Pipeline(settings.model_copy(update={"data_dir": data_dir}))
    from rag.errors import IndexCorruptError, IndexMismatchError, IndexNotFoundError

    rebuild = False
    try:
        pipeline.load(build_from_seeds=False)
        return pipeline
    except IndexMismatchError:
        pass  # built with other settings: re-index, reusing vectors where the model and chunking agree
    except (IndexNotFoundError, IndexCorruptError):
        rebuild = True
    from rag.progress import progress_bar

    bar, update = progress_bar(f"indexing {len(dataset.corpus)} documents")
    try:
        pipeline.ingest_documents(dataset.corpus, progress=update, replace_all=True, rebuild=rebuild)
    finally:
        bar.close()
    return pipeline


def _judge_for(args: argparse.Namespace, pipeline, settings):
    """A Judge over the configured OpenAI-compatible model, or None (off, or auto without an LLM)."""
    from rag.components import make_generators

    from .judge import Judge

    settings = pipeline.settings if pipeline else settings
    if args.judge == "off" or (args.judge == "auto" and settings.generator != "openai"):
        return None
    # Over --url there is no pipeline here: the judge is the settings' LLM alone (no model is loaded).
    llm = (pipeline.generators if pipeline else make_generators(settings, None)).get("openai")
    embed = (lambda texts: pipeline.embedder.encode(texts)) if pipeline else None
    return Judge(llm.complete, embed)


def judge_model(pipeline, settings) -> str:
    s = pipeline.settings if pipeline else settings
    return f"{s.openai_model} at {s.openai_base_url}"


def run(args: argparse.Namespace, settings) -> int:
    """`rag eval`: `settings` are the command line's (RAG_* and flags)."""
    from tqdm import tqdm

    # Imported here: `rag` builds its parser with this module, and `rag ask` should not pay for the runner.
    from .runner import HttpBackend, InProcessBackend, run_items, summarize, warm_up

    from rag.snapshot import package_versions

    try:
        dataset = load_dataset(args.dataset, limit_articles=args.limit_articles)
        if args.holdout_every:
            if not dataset.corpus:
                raise DatasetError("--holdout-every needs a SQuAD dataset (it removes articles from its corpus)")
            dataset = hold_out_articles(dataset, args.holdout_every)
        variants = {name: parse_variant(name) for name in (args.compare.split(",") if args.compare else ["default"])}
    except DatasetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    items = dataset.items[: args.limit] if args.limit else dataset.items

    pipeline = None if args.url else _pipeline_for(dataset, args, settings)
    documents = {d.id: d.text for d in dataset.corpus} if dataset.corpus else (
        {d.id: d.text for d in pipeline.index.live_documents()} if pipeline else None)

    judge = _judge_for(args, pipeline, settings)
    has_gold = any(i.gold_documents for i in items)
    results, per_question, latencies = {}, {}, {}
    for name, overrides in variants.items():
        if args.url:
            unsupported = set(overrides) - {"retrieval_mode", "generator"}
            if unsupported:
                print(f"error: variant {name!r} changes {sorted(unsupported)}, which only works in-process",
                      file=sys.stderr)
                return 2
            backend = HttpBackend(args.url, mode=overrides.get("retrieval_mode"),
                                  generator=overrides.get("generator"), concurrency=args.concurrency)
        else:
            variant = pipeline.with_settings(**overrides)
            if variant.index_config != pipeline.index.config:
                print(f"error: variant {name!r} changes how the index is built; run it as its own evaluation",
                      file=sys.stderr)
                return 2
            backend = InProcessBackend(variant)
        bar = tqdm(total=len(items), desc=name, unit="q", file=sys.stderr, dynamic_ncols=True,
                mininterval=0.2 if sys.stderr.isatty() else 5.0)
        tally = {"n": 0, "hit": 0.0, "contain": 0.0, "answerable": 0}

        def on_record(rec, bar=bar, tally=tally):
            from . import metrics as m

            tally["n"] += 1
            if rec.response is not None and rec.item.gold_documents:
                tally["hit"] += m.hit_at(rec.retrieved, rec.item.gold_documents, 1)
            if rec.response is not None and rec.item.answerable and rec.item.answers:
                tally["answerable"] += 1
                if not rec.response.get("abstained"):
                    tally["contain"] += m.contains_answer(m.strip_markers(rec.response["answer"]), rec.item.answers)
            shown = {"hit1": f"{tally['hit'] / tally['n']:.3f}"} if has_gold else {}  # no gold documents: no hit1
            if tally["answerable"]:
                shown["contain"] = f"{tally['contain'] / tally['answerable']:.3f}"
            bar.set_postfix(shown, refresh=False)
            bar.update(1)

        warm_up(backend, args.top_k)  # untimed; and each variant starts with no cached query embeddings
        started = time.perf_counter()
        records = run_items(items, backend, top_k=args.top_k, concurrency=args.concurrency, on_record=on_record,
                            judge=judge)
        bar.close()
        summary = summarize(records, documents)
        summary["wall_s"] = round(time.perf_counter() - started, 2)
        if not args.url and "extractive" in variant.generators.names:  # the corpus' own (rag/abstention.py)
            summary["abstain_threshold"] = round(variant.generators.get("extractive").abstain_threshold(variant.index), 4)
        results[name] = summary
        per_question[name] = [r.to_dict(documents) for r in records]
        latencies[name] = [r.latency_ms for r in records if r.response is not None]

    from .report import table, write

    print(table(results))
    failed = sum(r["failed_requests"] for r in results.values())
    if failed:
        print(f"{failed} request(s) failed; see per_question.jsonl for the errors", file=sys.stderr)
    if args.out:
        settings = pipeline.settings if pipeline else None
        meta = {"dataset": dataset.name, "dataset_sha256": dataset.sha256, "questions": len(items),
                "backend": f"HTTP {args.url}" if args.url else "in-process", "top_k": args.top_k,
                "variants": variants, "versions": package_versions(),
                "settings": settings.model_dump(mode="json", exclude={"openai_api_key", "api_keys"}) if settings else None}
        if judge is not None:
            meta["judge"] = judge_model(pipeline, settings)
            meta["judge_failures"] = judge.failures
        write(args.out, meta, results, per_question, latencies)
        print(f"report written to {args.out}", file=sys.stderr)
    return 0
