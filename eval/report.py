"""Reports: report.json (everything), report.md (definitions, a summary table, what went wrong, plots),
per_question.jsonl, PNG plots."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from .judge import PROMPT as JUDGE_PROMPT
from .runner import FAILURES

FAILURE_ROWS = 50  # per variant in report.md; per_question.jsonl has them all

COLUMNS = [
    ("hit@1", "hit@1"), ("hit@5", "hit@5"), ("hit@20", "hit@20"), ("mrr@10", "MRR@10"), ("ndcg@10", "nDCG@10"),
    ("containment", "contain"), ("exact_match", "EM"), ("f1", "F1"), ("answer_words", "words"),
    ("citation_validity", "cite valid"), ("citation_support", "cite support"),
    ("abstention_precision", "abst P"), ("abstention_recall", "abst R"), ("abstain_threshold", "abst t"),
    ("faithfulness", "faithful"), ("answer_relevance", "relevant"), ("context_precision", "ctx P"),
    ("context_recall", "ctx R"),
    ("latency_p50_ms", "p50 ms"), ("latency_p95_ms", "p95 ms"), ("latency_p99_ms", "p99 ms"),
    ("failed_requests", "failed"),
]

DEFINITIONS = {
    "hit@1": "hit@k: share of questions with a gold document among the first k documents retrieved (chunks "
             "mapped to their documents, duplicates removed; over questions that have gold documents)",
    "MRR@10": "mean of 1 / rank of the first gold document in the top 10 (0 if none)",
    "nDCG@10": "normalised discounted cumulative gain of the gold documents in the top 10",
    "contain": "share of answerable questions whose answer (markers removed) contains a gold answer after "
               "SQuAD normalisation; an abstention scores 0",
    "EM": "SQuAD exact match of the answer text with a gold answer (low by design: answers are quoted sentences)",
    "F1": "SQuAD token F1 of the answer text against the best gold answer",
    "words": "mean answer length in words, over answers that did not abstain",
    "cite valid": "share of answers whose [n] markers all name a citation, numbered by first use, and whose "
                  "quotes equal the document's text at their offsets",
    "cite support": "share of answerable questions where a cited quote contains a gold answer",
    "abst P": "abstention precision: of the abstentions, the share on questions the documents do not answer",
    "abst R": "abstention recall: of the questions the documents do not answer, the share that abstained",
    "abst t": "the extractive generator's abstention threshold on this corpus: the base one or the corpus' own "
              "(docs/quality.md, in-process runs only)",
    "faithful": "LLM-judged (Ragas): share of the answer's statements the retrieved passages support",
    "relevant": "LLM-judged (Ragas): mean cosine similarity between the question and questions the judge "
                "generates from the answer (embedded with the served model)",
    "ctx P": "LLM-judged (Ragas context precision): mean precision@k over the ranks of passages the judge "
             "finds useful for the reference answer",
    "ctx R": "LLM-judged (Ragas context recall): share of the reference answer's sentences the passages support",
    "p50 ms": "latency percentiles of /ask (in-process or HTTP), after one untimed warm-up question; each "
              "variant starts with an empty query-embedding cache",
    "failed": "requests that failed (errors in per_question.jsonl)",
}


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


def _cell(text, limit: int = 160) -> str:
    """Text for one Markdown table cell: one line, pipes escaped, cut to `limit` characters."""
    text = " ".join(str(text).split())
    text = text if len(text) <= limit else text[:limit - 1] + "\u2026"
    return text.replace("\\", "\\\\").replace("|", "\\|")


def definitions(results: dict[str, dict]) -> list[str]:
    shown = {h for k, h in COLUMNS if any(r.get(k) is not None for r in results.values())}
    lines = ["## Metrics", ""]
    for header, text in DEFINITIONS.items():
        if header in shown or (header == "hit@1" and shown & {"hit@1", "hit@5", "hit@20"}):
            lines.append(f"- **{header}**: {text}")
    return lines + [""]


def failures(results: dict[str, dict], per_question: dict[str, Sequence[dict]]) -> list[str]:
    lines = ["## What went wrong", "",
             "| variant | " + " | ".join(FAILURES) + " |", "|---|" + "---:|" * len(FAILURES)]
    for name, r in results.items():
        counts = r.get("failures", {})
        lines.append(f"| {name} | " + " | ".join(str(counts.get(k, 0)) for k in FAILURES) + " |")
    lines += [""] + [f"- **{k}**: {v}" for k, v in FAILURES.items()] + [""]
    for name, rows in per_question.items():
        failed = [q for q in rows if q.get("failure")]
        lines += [f"### {name}: {len(failed)} of {len(rows)} questions"
                  + (f" (first {FAILURE_ROWS} shown; all in per_question.jsonl)" if len(failed) > FAILURE_ROWS else ""),
                  ""]
        if not failed:
            lines += ["No failures.", ""]
            continue
        lines += ["| id | question | gold | answer | what went wrong |", "|---|---|---|---|---|"]
        for q in failed[:FAILURE_ROWS]:
            gold = " / ".join(q.get("answers") or []) or ("(unanswerable)" if not q.get("answerable") else "-")
            lines.append(f"| {_cell(q['id'], 40)} | {_cell(q['question'])} | {_cell(gold, 80)} | "
                         f"{_cell(q.get('answer', ''), 200)} | {q['failure']} |")
        lines.append("")
    return lines


def write(out: Path, meta: dict, results: dict[str, dict], per_question: dict[str, Sequence[dict]],
          latencies: dict[str, Sequence[float]]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps({**meta, "results": results}, indent=2, ensure_ascii=False))
    plots = plot(out, results, latencies)
    md = [f"# Evaluation: {meta['dataset']}", "",
          f"{meta['questions']} questions, dataset sha256 `{meta['dataset_sha256'][:16]}`, "
          f"{meta['backend']}, top_k {meta['top_k']}.", "", table(results), ""]
    md += definitions(results)
    if plots:
        md += ["## Plots", "", " ".join(f"![{name}]({name})" for name in plots), ""]
    md += failures(results, per_question)
    if meta.get("judge"):
        md += ["## The judge", "", f"Model `{meta['judge']}`, one call per answered question "
               f"({meta.get('judge_failures', 0)} unreadable replies skipped). Its prompt:", "",
               "```text", JUDGE_PROMPT, "```", ""]
    (out / "report.md").write_text("\n".join(md), encoding="utf-8")
    with open(out / "per_question.jsonl", "w", encoding="utf-8") as f:
        for variant, rows in per_question.items():
            for row in rows:
                f.write(json.dumps({"variant": variant, **row}, ensure_ascii=False) + "\n")
    plot(out, results, latencies)


def plot(out: Path, results: dict[str, dict], latencies: dict[str, Sequence[float]]) -> list[str]:
    """hit_at_k.png (all variants on one set of axes), latency.png and outcomes.png (one panel per variant,
    side by side, same scales). Returns the files written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written: list[str] = []
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
        written.append("hit_at_k.png")
    names = [n for n, v in latencies.items() if v]
    if names:
        fig, axes = plt.subplots(1, len(names), figsize=(3.6 * len(names) + 0.6, 3.4), sharex=True, sharey=True,
                                 squeeze=False)
        top = max(max(latencies[n]) for n in names)
        for ax, name in zip(axes[0], names):
            ax.hist(latencies[name], bins=40, range=(0, top), color="#1f5fbf")
            ax.set_title(name)
            ax.set_xlabel("/ask latency (ms)")
        axes[0][0].set_ylabel("questions")
        fig.tight_layout()
        fig.savefig(out / "latency.png", dpi=110)
        plt.close(fig)
        written.append("latency.png")
    kinds = list(FAILURES)
    counted = {n: r["failures"] for n, r in results.items() if r.get("failures")}
    if counted:
        fig, axes = plt.subplots(1, len(counted), figsize=(3.6 * len(counted) + 0.6, 3.8), sharey=True, squeeze=False)
        for ax, (name, counts) in zip(axes[0], counted.items()):
            total = results[name]["questions"] - results[name].get("failed_requests", 0)
            ok = total - sum(counts.values())
            labels, values = ["right"] + kinds, [ok] + [counts.get(k, 0) for k in kinds]
            ax.barh(labels[::-1], values[::-1], color=["#c0392b"] * len(kinds) + ["#2e8b57"])
            ax.set_title(name)
            ax.set_xlabel("questions")
        fig.tight_layout()
        fig.savefig(out / "outcomes.png", dpi=110)
        plt.close(fig)
        written.append("outcomes.png")
    return written
