"""Fit the calibrated scores of rag/scoring.py on held-out benchmarks and choose the abstention threshold.

    python -m eval.calibrate --data-dir DIR squad-v1.1-dev.json.gz:12 covidqa-dev.json.gz

Each dataset (`PATH[:ARTICLES]`) is read twice with every 6th article held out (its questions
unanswerable): the models are **fitted** on the split that removes articles 3, 9, 15, ...
(`--fit-offset`), and **reported** on the split that `rag eval --holdout-every 6` uses (articles 0, 6,
12, ...), so that no question counted as unanswerable in the report was seen as one in the fit. For
every question the top passages and their sentences are scored; the passage model learns "this passage
is from a gold document", the sentence model "this sentence contains a gold answer", the answerable
model "the question's answer is in the corpus". Datasets are weighted equally, so that neither domain
decides alone. Prints the coefficients to paste into rag/scoring.py and, per threshold, the abstention
precision / recall and the share of answerable questions abstained on each reported dataset.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def hold_out(dataset, every: int, offset: int):
    """eval.datasets.hold_out_articles, removing articles offset, offset + every, ... instead of 0, every, ..."""
    from eval.datasets import Dataset, hold_out_articles

    articles = list(dict.fromkeys(i.article for i in dataset.items))
    shifted = articles[offset:] + articles[:offset]  # hold_out_articles removes shifted[::every]
    order = {a: n for n, a in enumerate(shifted)}
    items = sorted(dataset.items, key=lambda i: (order[i.article], i.id))
    out = hold_out_articles(Dataset(name=dataset.name, items=items, corpus=dataset.corpus, sha256=dataset.sha256),
                            every)
    out.name = f"{dataset.name} (holdout 1/{every} from {offset})"
    return out


def collect(path: str, data_dir: Path, top_k: int, holdout: int, offset: int = 0) -> dict:
    from eval.cli import _pipeline_for
    from eval.datasets import hold_out_articles, load_dataset
    from eval.metrics import contains_answer
    from rag.config import Settings

    file, _, articles = path.partition(":")
    dataset = load_dataset(Path(file), limit_articles=int(articles) if articles else None)
    dataset = hold_out(dataset, holdout, offset) if offset else hold_out_articles(dataset, holdout)
    args = argparse.Namespace(data_dir=data_dir, model=None, corpus=None)
    pipeline = _pipeline_for(dataset, args, Settings(data_dir=data_dir))
    gen = pipeline.generators.get("extractive")
    passages_x, passages_y, sentences, questions, qx = [], [], [], [], []
    for n, item in enumerate(dataset.items):
        found = pipeline.search(item.question, top_k)
        gold = set(item.gold_documents)
        for p in found:
            passages_x.append([p.signals[k] for k in ("sentence_cosine", "cosine", "bm25_share", "coverage",
                                                       "unknown")])
            passages_y.append(float(p.document_id in gold))
        first = len(passages_x) - len(found)
        q_sentences = []
        for s in gen.score_sentences(item.question, found, pipeline.index):
            doc = pipeline.index.documents[pipeline.index.sentences[s.row][0]]
            hit = item.answerable and contains_answer(doc.text[s.start:s.end], item.answers)
            q_sentences.append((first + found.index(s.passage), s.features["cosine"], s.features["coverage"],
                                s.features["unknown"], float(hit)))
        sentences.append(q_sentences)
        questions.append(item.answerable)
        qx.append(question_features(found, q_sentences))
        if n % 200 == 0:
            print(f"{file}: {n}/{len(dataset.items)}", file=sys.stderr)
    pipeline.close()
    return {"name": Path(file).name, "px": np.array(passages_x), "py": np.array(passages_y),
            "sentences": sentences, "answerable": np.array(questions), "qx": np.array(qx)}


def question_features(found, q_sentences) -> list[float]:
    """What rag.scoring.answerable_features computes from the passages and the best sentence."""
    from rag.scoring import ANSWERABLE_MODEL, answerable_features

    if not found:
        return [0.0] * len(ANSWERABLE_MODEL.names)
    f = answerable_features(found, [{"cosine": s[1], "coverage": s[2]} for s in q_sentences])
    return [f[n] for n in ANSWERABLE_MODEL.names]


def _weights(parts: list[np.ndarray]) -> np.ndarray:
    """Each dataset weighs the same in total, whatever its size (scaled to a mean weight of 1)."""
    w = np.concatenate([np.full(len(p), 1.0 / len(p)) for p in parts])
    return w * len(w) / w.sum()


def fit(sets: list[dict]):
    """The passage and sentence models, fitted on `sets`."""
    from sklearn.linear_model import LogisticRegression

    pm = LogisticRegression(C=10.0, max_iter=2000).fit(np.concatenate([s["px"] for s in sets]),
                                                      np.concatenate([s["py"] for s in sets]),
                                                      sample_weight=_weights([s["py"] for s in sets]))
    rows, ys = [], []
    for s in sets:
        pscore = pm.predict_proba(s["px"])[:, 1]
        arr = np.array([(pscore[pi], cos, cov, unk, y) for q in s["sentences"] for pi, cos, cov, unk, y in q])
        rows.append(arr[:, [1, 2, 0, 3]])  # cosine, coverage, passage, unknown
        ys.append(arr[:, 4])
    sm = LogisticRegression(C=10.0, max_iter=2000).fit(np.concatenate(rows), np.concatenate(ys),
                                                      sample_weight=_weights(ys))
    return pm, sm


def fit_answerable(sets: list[dict], c: float = 10.0):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=c, max_iter=5000).fit(
        np.concatenate([s["qx"] for s in sets]), np.concatenate([s["answerable"] for s in sets]).astype(float),
        sample_weight=_weights([s["qx"] for s in sets]))


def report(sets: list[dict], model) -> None:
    """Per threshold, on each set: abstention precision, recall, and the share of answerable questions abstained."""
    print("threshold  " + "  ".join(f"{s['name'][:14]:>14} P/R/answerable-abstained" for s in sets))
    for s in sets:
        s["best"] = model.predict_proba(s["qx"])[:, 1]
    for t in np.arange(0.02, 0.95, 0.02):
        cells = []
        for s in sets:
            abstain = s["best"] < t
            unans = ~s["answerable"]
            tp = (abstain & unans).sum()
            p = tp / abstain.sum() if abstain.sum() else float("nan")
            r = tp / unans.sum() if unans.sum() else float("nan")
            a = (abstain & s["answerable"]).sum() / max(1, s["answerable"].sum())
            cells.append(f"{p:>14.3f} {r:.3f} {a:.3f}      ")
        print(f"{t:9.3f}  " + "  ".join(cells))


def _coefficients(model) -> str:
    return f"weights {json.dumps([round(float(x), 3) for x in model.coef_[0]])} bias {round(float(model.intercept_[0]), 3)}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("datasets", nargs="+", help="PATH or PATH:ARTICLES (SQuAD layout)")
    p.add_argument("--data-dir", type=Path, default=Path("data"))
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--holdout-every", type=int, default=6)
    p.add_argument("--fit-offset", type=int, default=3, help="fit on the split that holds out articles "
                   "OFFSET, OFFSET + every, ...; 0 fits on the reported split itself (not honest)")
    p.add_argument("--c", type=float, default=10.0, help="inverse L2 strength of the answerable model")
    args = p.parse_args(argv)
    report_sets = [collect(d, args.data_dir, args.top_k, args.holdout_every) for d in args.datasets]
    fit_sets = report_sets if args.fit_offset == 0 else [
        collect(d, args.data_dir, args.top_k, args.holdout_every, args.fit_offset) for d in args.datasets]
    pm, sm = fit(fit_sets)
    print("PASSAGE_MODEL", _coefficients(pm))
    print("SENTENCE_MODEL", _coefficients(sm))
    am = fit_answerable(fit_sets, args.c)
    print("ANSWERABLE_MODEL", _coefficients(am))
    print("fitted on:", ", ".join(s["name"] for s in fit_sets), f"(articles held out from {args.fit_offset});",
          "reported on the `rag eval --holdout-every` split:")
    report(report_sets, am)
    return 0


if __name__ == "__main__":
    sys.exit(main())
