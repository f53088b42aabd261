"""Reports: report.json (everything), report.md (a table to read), per_question.jsonl, PNG plots."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

COLUMNS = [
    ("hit@1", "hit@1"), ("hit@5", "hit@5"), ("hit@20", "hit@20"), ("mrr@10", "MRR@10"), ("ndcg@10", "nDCG@10"),
    ("containment", "contain"), ("exact_match", "EM"), ("f1", "F1"), ("answer_words", "words"),
    ("citation_validity", "cite valid"), ("citation_support", "cite support"),
    ("abstention_precision", "abst P"), ("abstention_recall", "abst R"),
    ("latency_p50_ms", "p50 ms"), ("latency_p95_ms", "p95 ms"), ("latency_p99_ms", "p99 ms"),
    ("failed_requests", "failed"),
]


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.1f}" if abs(value) >= 1 else f"{value:.3f}"
    return str(value)


def table(results: dict[str, dict]) -> str:
    """A Markdown table, one row per variant; columns with no value anywhere are left out."""
    cols = [(k, h) for k, h in COLUMNS if any(r.get(k) is not None for r in results.values())]
    lines = ["| variant | " + " | ".join(h for _, h in cols) + " |",
             "|---|" + "---:|" * len(cols)]
    for name, r in results.items():
        lines.append(f"| {name} | " + " | ".join(_fmt(r.get(k)) for k, _ in cols) + " |")
    return "\n".join(lines)


def write(out: Path, meta: dict, results: dict[str, dict], per_question: dict[str, Sequence[dict]],
          latencies: dict[str, Sequence[float]]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps({**meta, "results": results}, indent=2, ensure_ascii=False))
    md = [f"# Evaluation: {meta['dataset']}", "",
          f"{meta['questions']} questions, dataset sha256 `{meta['dataset_sha256'][:16]}`, "
          f"{meta['backend']}, top_k {meta['top_k']}.", "", table(results), ""]
    (out / "report.md").write_text("\n".join(md))
    with open(out / "per_question.jsonl", "w", encoding="utf-8") as f:
        for variant, rows in per_question.items():
            for row in rows:
                f.write(json.dumps({"variant": variant, **row}, ensure_ascii=False) + "\n")
    plot(out, results, latencies)


def plot(out: Path, results: dict[str, dict], latencies: dict[str, Sequence[float]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = {k: r["hit_curve"] for k, r in results.items() if r.get("hit_curve")}
    if curves:
        fig, ax = plt.subplots(figsize=(6, 4))
        for name, curve in curves.items():
            ax.plot(range(1, len(curve) + 1), curve, marker=".", label=name)
        ax.set_xlabel("k (documents)")
        ax.set_ylabel("hit@k")
        ax.set_title("Retrieval: gold document in the top k")
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / "hit_at_k.png", dpi=110)
        plt.close(fig)
    if any(latencies.values()):
        fig, ax = plt.subplots(figsize=(6, 4))
        for name, values in latencies.items():
            if values:
                ax.hist(values, bins=40, alpha=0.5, label=name)
        ax.set_xlabel("/ask latency (ms)")
        ax.set_ylabel("questions")
        ax.set_title("Answer latency")
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / "latency.png", dpi=110)
        plt.close(fig)
