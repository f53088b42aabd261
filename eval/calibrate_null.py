"""Choose the corpus threshold's parameters (rag/abstention.py) on held-out benchmarks.

    python -m eval.calibrate_null --data-dir DIR squad-v1.1-dev.json.gz:12 covidqa-dev.json.gz

For each dataset, on the fit split (every 6th article from the 4th held out, as eval.calibrate) and
on the split `rag eval --holdout-every 6` reports: every question's estimated probability that the
passages answer it (computed once), and the corpus' null probabilities for each pseudo-question
variant (window size, count, whether the work is left out). Prints, per variant and quantile, each
split's threshold and its abstention precision / recall / share of answerable questions abstained.
Choose on the fit split (both datasets), read the result on the reported one.
"""
from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np


def collect(path: str, data_dir: Path, offset: int, variants: list) -> dict:
    from rag.abstention import null_probabilities
    from rag.config import Settings
    from rag.generation.extractive import answerable

    from .calibrate import hold_out
    from .cli import _pipeline_for
    from .datasets import hold_out_articles, load_dataset

    file, _, articles = path.partition(":")
    dataset = load_dataset(Path(file), limit_articles=int(articles) if articles else None)
    dataset = hold_out(dataset, 6, offset) if offset else hold_out_articles(dataset, 6)
    pipeline = _pipeline_for(dataset, argparse.Namespace(data_dir=data_dir, model=None, corpus=None),
                             Settings(data_dir=data_dir))
    gen, index = pipeline.generators.get("extractive"), pipeline.index
    probs = []
    for item in dataset.items:
        found = pipeline.search(item.question)
        probs.append(answerable(found, [s.features for s in gen.score_sentences(item.question, found, index)])
                     if found else 0.0)
    nulls = {v: null_probabilities(index, gen._pseudo_answerable, v) for v in variants}
    pipeline.close()
    return {"name": f"{Path(file).name[:12]}@{offset}", "probs": np.array(probs),
            "answerable": np.array([i.answerable for i in dataset.items]), "nulls": nulls}


def abstention(split: dict, threshold: float) -> tuple[float, float, float]:
    """(precision, recall, answerable abstained) of abstaining below `threshold`."""
    abstain, unanswerable = split["probs"] < threshold, ~split["answerable"]
    tp = int((abstain & unanswerable).sum())
    return (tp / max(int(abstain.sum()), 1), tp / max(int(unanswerable.sum()), 1),
            int((abstain & split["answerable"]).sum()) / max(int(split["answerable"].sum()), 1))


def main(argv: list[str] | None = None) -> int:
    from rag.abstention import NullConfig, threshold_from

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("datasets", nargs="+", help="PATH or PATH:ARTICLES (SQuAD layout)")
    p.add_argument("--data-dir", type=Path, default=Path("data"))
    p.add_argument("--base", type=float, default=0.12, help="the base threshold (RAG_ABSTAIN_THRESHOLD)")
    p.add_argument("--words", type=int, nargs="+", default=[10, 14])
    p.add_argument("--queries", type=int, nargs="+", default=[96])
    p.add_argument("--quantiles", type=float, nargs="+", default=[0.6, 0.7, 0.8, 0.85, 0.9])
    args = p.parse_args(argv)
    variants = [NullConfig(queries=q, words=w, same_title=t)
                for w, q, t in itertools.product(args.words, args.queries, (True, False))]
    splits = [collect(d, args.data_dir, offset, variants) for offset in (3, 0) for d in args.datasets]
    print("variant / quantile  " + "  ".join(f"{s['name']:>24} t P/R/abst" for s in splits))
    for v in variants:
        for q in args.quantiles:
            cells = []
            for s in splits:
                t = threshold_from(s["nulls"][v], args.base, q)
                cells.append(f"{t:.2f} " + "/".join(f"{x:.3f}" for x in abstention(s, t)))
            label = f"{'work' if v.same_title else 'doc'} w{v.words} n{v.queries} q{q}"
            print(f"{label:20} " + "  ".join(f"{c:>34}" for c in cells))
    print("(fit splits: @3; reported, `rag eval --holdout-every 6`: @0)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
