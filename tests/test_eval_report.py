"""Evaluation reports: what went wrong per question, metric definitions, plots per variant, warm-up and
per-variant query caches, and LLM-judged metrics (Ragas' definitions) with the LLM stand-in."""
from __future__ import annotations

import json

import pytest

from eval.datasets import EvalItem
from eval.judge import Judge, context_precision
from eval.runner import Record

DOCS = {"d1": "Peskov rejected the plan. Lavrov agreed with him.", "d2": "The weather was fine."}
PESKOV_CITE = {"id": 1, "document_id": "d1", "start": 0, "end": 25, "text": "Peskov rejected the plan."}


def record(answerable=True, answers=("rejected",), gold=("d1",), answer="Peskov rejected the plan. [1]",
           abstained=False, citations=(PESKOV_CITE,)) -> Record:
    item = EvalItem(id="q", question="What did Peskov do?", answers=tuple(answers), gold_documents=tuple(gold),
                    answerable=answerable)
    return Record(item, ["d1"], {"answer": answer, "abstained": abstained, "citations": list(citations)}, 5.0)


@pytest.mark.parametrize("rec, kind", [
    (record(), None),
    (record(abstained=True, answer="The documents don't say.", citations=()), "false abstention"),
    (record(answerable=False, answers=(), gold=()), "answered unanswerable"),
    (record(answerable=False, answers=(), gold=(), abstained=True, citations=(), answer="No."), None),
    (record(citations=({**PESKOV_CITE, "text": "Peskov accepted the plan."},)), "invalid citation"),
    (record(answer="Peskov rejected the plan. [2]"), "invalid citation"),
    (record(gold=("d2",)), "wrong document"),
    (record(answers=("Lavrov agreed",)), "answer not contained"),
])
def test_each_failed_question_says_what_went_wrong(rec, kind):
    assert rec.failure(DOCS) == kind


def test_context_precision_follows_ragas():
    assert context_precision([True, False, True]) == pytest.approx((1 / 1 + 2 / 3) / 2)
    assert context_precision([False, True]) == pytest.approx(1 / 2)
    assert context_precision([False, False]) == 0.0


def test_an_unreadable_judge_reply_costs_only_that_question():
    judge = Judge(lambda messages: "I think it is fine.")
    scores = judge.score("q?", "an answer", False, [{"text": "p"}], ["a"])
    assert scores == {"faithfulness": None, "answer_relevance": None, "context_precision": None,
                      "context_recall": None} and judge.failures == 1
    assert judge.score("q?", "x", True, [{"text": "p"}], ["a"])["faithfulness"] is None  # abstentions: not judged


VERDICT = {"statements": [{"statement": "Peskov rejected the idea.", "supported": True},
                          {"statement": "Lavrov welcomed it.", "supported": False}],
           "questions": ["What did Peskov say about the peacekeeping plan?", "Who rejected the plan?",
                         "How did the Kremlin react?"],
           "passages": [{"index": 1, "useful": True}, {"index": 2, "useful": False}, {"index": 3, "useful": True}],
           "reference_sentences": [{"sentence": "Russia rejected it.", "attributed": True}]}


@pytest.mark.integration
def test_rag_eval_report_with_failures_definitions_plots_and_judge(tmp_path, monkeypatch, llm):
    from ragcli.main import build_parser
    from rag.documents import load_paths

    from support import OFF_TOPIC, SEEDS

    seed_id = load_paths([SEEDS]).documents[0].id
    dataset = tmp_path / "qa.jsonl"
    rows = [{"id": "peskov", "question": "What did Peskov say?", "answers": ["strongly rejected"],
             "gold_documents": [seed_id]},
            {"id": "weather", "question": OFF_TOPIC, "answers": ["sunny"], "gold_documents": [seed_id]},
            {"id": "mars", "question": "Who won the 1954 chess olympiad?", "answerable": False}]
    dataset.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    llm.reply = "Here is my grading:\n" + json.dumps(VERDICT)
    monkeypatch.setenv("RAG_OPENAI_BASE_URL", llm.base_url)
    monkeypatch.setenv("RAG_OPENAI_MODEL", "judge-stand-in")
    out = tmp_path / "report"
    args = build_parser().parse_args(["--data-dir", str(tmp_path / "data"), "eval", str(dataset), "--corpus",
                                      str(SEEDS), "--compare", "hybrid,dense", "--judge", "on", "--out", str(out)])
    cleared = []
    import rag.embedding

    original = rag.embedding.SentenceTransformerEmbedder.clear_query_cache
    monkeypatch.setattr(rag.embedding.SentenceTransformerEmbedder, "clear_query_cache",
                        lambda self: (cleared.append(len(self._cache)), original(self)))
    assert args.func(args) == 0  # `rag eval`, with the settings the command line makes

    report = json.loads((out / "report.json").read_text())
    assert cleared and len(cleared) == 2 and all(n >= 1 for n in cleared)  # each variant starts uncached
    for name in ("hybrid", "dense"):
        r = report["results"][name]
        assert r["failures"]["false abstention"] == 1  # the off-topic question with a gold answer
        assert r["faithfulness"] == pytest.approx(0.5)
        assert r["context_precision"] == pytest.approx((1 + 2 / 3) / 2)
        assert r["context_recall"] == 1.0
        assert 0.3 < r["answer_relevance"] <= 1.0
    assert report["judge"] == f"judge-stand-in at {llm.base_url}"
    judged = [q for q in llm.requests if "You are grading" in q["body"]["messages"][0]["content"]]
    assert len(judged) == 2  # one call per answered (not abstained) question and variant

    md = (out / "report.md").read_text()
    assert "## Metrics" in md and "- **hit@1**:" in md and "- **faithful**:" in md and "- **ctx P**:" in md
    assert "## What went wrong" in md and "| weather | What will the weather be in Paris tomorrow? | sunny |" in md
    assert "false abstention |" in md
    assert "![latency.png](latency.png)" in md and "![outcomes.png](outcomes.png)" in md
    assert "## The judge" in md and "Return:" in md
    for png in ("hit_at_k.png", "latency.png", "outcomes.png"):
        assert (out / png).stat().st_size > 1000
    lines = [json.loads(x) for x in (out / "per_question.jsonl").read_text().splitlines()]
    assert {q["failure"] for q in lines if q["id"] == "weather"} == {"false abstention"}
    assert all("faithfulness" in q for q in lines if q["id"] == "peskov")
