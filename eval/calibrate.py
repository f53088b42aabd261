"""Fit the calibrated scores of rag/scoring.py on held-out benchmarks and choose the abstention threshold.

    python -m eval.calibrate --data-dir DIR squad-v1.1-dev.json.gz:12 covidqa-dev.json.gz

Each dataset (`PATH[:ARTICLES]`) is read with every 6th article held out (its questions unanswerable),
through the same cached eval index as `rag eval --holdout-every 6`. For every question the top passages
and their sentences are scored; the passage model learns "this passage is from a gold document", the
sentence model "this sentence contains a gold answer". Datasets are weighted equally, so that neither
domain decides alone. Prints the coefficients to paste into rag/scoring.py and, per threshold, the
abstention precision / recall and the share of answerable questions abstained on each dataset.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def collect(path: str, data_dir: Path, top_k: int, holdout: int) -> dict:
    from eval.cli import _pipeline_for
    from eval.datasets import hold_out_articles, load_dataset
    from eval.metrics import contains_answer

    file, _, articles = path.partition(":")
    dataset = load_dataset(Path(file), limit_articles=int(articles) if articles else None)
    dataset = hold_out_articles(dataset, holdout)
    args = argparse.Namespace(data_dir=data_dir, model=None, corpus=None)
    pipeline = _pipeline_for(dataset, args)
    gen = pipeline.generators["extractive"]
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
    return {"name": Path(file).name, "px": np.array(passages_x), "py": np.array(passages_y),
            "sentences": sentences, "answerable": np.array(questions), "qx": np.array(qx)}


def question_features(found, q_sentences) -> list[float]:
    """What rag.scoring.answerable_features computes from the passages and the best sentence."""
    from rag.scoring import ANSWERABLE_MODEL, answerable_features

    if not found:
        return [0.0] * len(ANSWERABLE_MODEL.names)
    f = answerable_features(found, [{"cosine": s[1], "coverage": s[2]} for s in q_sentences])
    return [f[n] for n in ANSWERABLE_MODEL.names]


def fit(sets: list[dict]) -> tuple[tuple, float, tuple, float]:
    from sklearn.linear_model import LogisticRegression

    px = np.concatenate([s["px"] for s in sets])
    py = np.concatenate([s["py"] for s in sets])
    pw = np.concatenate([np.full(len(s["py"]), 1.0 / len(s["py"])) for s in sets])
    pm = LogisticRegression(C=10.0, max_iter=2000).fit(px, py, sample_weight=pw * len(py))
    for s in sets:
        s["pscore"] = pm.predict_proba(s["px"])[:, 1]
    rows, ys, ws = [], [], []
    for s in sets:
        flat = [(s["pscore"][pi], cos, cov, unk, y) for q in s["sentences"] for pi, cos, cov, unk, y in q]
        arr = np.array(flat)
        rows.append(arr[:, [1, 2, 0, 3]])  # cosine, coverage, passage, unknown
        ys.append(arr[:, 4])
        ws.append(np.full(len(arr), 1.0 / len(arr)))
    sx, sy, sw = np.concatenate(rows), np.concatenate(ys), np.concatenate(ws)
    sm = LogisticRegression(C=10.0, max_iter=2000).fit(sx, sy, sample_weight=sw * len(sy))
    for s in sets:
        best = []
        for q in s["sentences"]:
            if not q:
                best.append(0.0)
                continue
            x = np.array([[cos, cov, s["pscore"][pi], unk] for pi, cos, cov, unk, _ in q])
            best.append(float(sm.predict_proba(x)[:, 1].max()))
        s["best"] = np.array(best)
    return (tuple(pm.coef_[0]), float(pm.intercept_[0]), tuple(sm.coef_[0]), float(sm.intercept_[0]))


def fit_answerable(sets: list[dict]) -> tuple[tuple, float]:
    from sklearn.linear_model import LogisticRegression

    x = np.concatenate([s["qx"] for s in sets])
    y = np.concatenate([s["answerable"] for s in sets]).astype(float)
    w = np.concatenate([np.full(len(s["qx"]), 1.0 / len(s["qx"])) for s in sets])
    m = LogisticRegression(C=10.0, max_iter=5000).fit(x, y, sample_weight=w * len(y))
    for s in sets:
        s["best"] = m.predict_proba(s["qx"])[:, 1]
    return tuple(m.coef_[0]), float(m.intercept_[0])


def report(sets: list[dict]) -> None:
    print("threshold  " + "  ".join(f"{s['name'][:14]:>14} P/R/answerable-abstained" for s in sets))
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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("datasets", nargs="+", help="PATH or PATH:ARTICLES (SQuAD layout)")
    p.add_argument("--data-dir", type=Path, default=Path("data"))
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--holdout-every", type=int, default=6)
    args = p.parse_args(argv)
    sets = [collect(d, args.data_dir, args.top_k, args.holdout_every) for d in args.datasets]
    pw, pb, sw, sb = fit(sets)
    print("PASSAGE_MODEL weights", json.dumps([round(x, 3) for x in pw]), "bias", round(pb, 3))
    print("SENTENCE_MODEL weights", json.dumps([round(x, 3) for x in sw]), "bias", round(sb, 3))
    report(sets)
    aw, ab = fit_answerable(sets)
    print("ANSWERABLE_MODEL weights", json.dumps([round(x, 3) for x in aw]), "bias", round(ab, 3))
    report(sets)
    return 0


if __name__ == "__main__":
    sys.exit(main())
