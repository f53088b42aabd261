"""The extractive generator on the seed dev questions: correct, verifiable, well-numbered citations."""
from __future__ import annotations

import json

import pytest

from rag.errors import UnknownGeneratorError
from rag.generation import ABSTAIN_TEXT
from rag.generation.openai_chat import cite

from support import DEV_QA, OFF_TOPIC, check_answer_contract, markers


def _dev() -> list[dict]:
    with open(DEV_QA, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


ANSWERABLE = [q for q in _dev() if q["answerable"]]
UNANSWERABLE = [q for q in _dev() if not q["answerable"]]
@pytest.mark.parametrize("q", ANSWERABLE, ids=lambda q: q["id"])
def test_evidence_for_each_answerable_question_is_retrieved(seed_pipeline, q):
    passages = seed_pipeline.search(q["question"], 5)
    text = " ".join(p.text for p in passages).lower()
    assert any(a.lower() in text for a in q["answers"])


# Every answerable question is checked. One is a known failure of the sentence scorer (issue 11 is open
# for it): the evidence ("Until recently, Ukraine's answer to this was clear: joining NATO") is retrieved
# but another sentence is quoted. Strict: the day the scorer gets it right, this marker must go.
KNOWN_WRONG = {"dev-nato-aspiration": "the scorer quotes a sentence about 'preventing future conflicts' "
                                      "instead of the one naming NATO (issue 11)"}


@pytest.mark.parametrize("q", [pytest.param(q, id=q["id"], marks=pytest.mark.xfail(
    strict=True, reason=KNOWN_WRONG[q["id"]])) if q["id"] in KNOWN_WRONG else pytest.param(q, id=q["id"])
    for q in ANSWERABLE])
def test_extractive_answer_contains_an_acceptable_answer(seed_pipeline, q):
    result = seed_pipeline.ask(q["question"]).model_dump(mode="json", exclude_none=True)
    assert result["generator"] == "extractive"
    assert not result["abstained"], f"abstained on an answerable question: {q['question']!r}"
    check_answer_contract(result, seed_pipeline)
    answer = result["answer"].lower()
    cited = " ".join(c["text"] for c in result["citations"]).lower()
    assert any(a.lower() in answer for a in q["answers"]), result["answer"]
    assert any(a.lower() in cited for a in q["answers"]), "the evidence for the answer is cited"


def test_nato_question_answers_with_verifiable_citations(seed_pipeline):
    (q,) = [q for q in ANSWERABLE if q["id"] == "dev-nato-aspiration"]
    result = seed_pipeline.ask(q["question"]).model_dump(mode="json", exclude_none=True)
    assert not result["abstained"]
    check_answer_contract(result, seed_pipeline)
    passages = " ".join(p["text"] for p in result["passages"])
    assert "joining NATO" in passages


def test_peskov_answer_cites_the_sentence_naming_peskov(seed_pipeline, seed_doc):
    result = seed_pipeline.ask("what did Peskov say").model_dump(mode="json", exclude_none=True)
    assert not result["abstained"], "the sentence naming Peskov answers this question"
    check_answer_contract(result, seed_pipeline)
    peskov = [c for c in result["citations"] if "Peskov" in c["text"]]
    assert peskov, result["answer"]
    c = peskov[0]
    assert seed_doc.text[c["start"]:c["end"]] == c["text"]
    assert "disapproval" in c["text"] or "rejected" in c["text"]


def test_the_seed_questions_hold_with_unrelated_documents_beside_the_article(tmp_pipeline):
    """The article beside 200 unrelated Wikipedia paragraphs: BM25 statistics and the calibrated
    scores change, the answers must not (abstaining on "What did Peskov say?" would be a regression)."""
    import gzip

    from rag.documents import load_paths, make_document

    from support import SEEDS, SQUAD

    data = json.load(gzip.open(SQUAD))
    paragraphs = [(a["title"], p["context"]) for a in data["data"][:12] for p in a["paragraphs"]][:200]
    pipeline = tmp_pipeline()
    pipeline.ingest_documents(load_paths([SEEDS]).documents + [
        make_document(text, source=f"squad/{i}", title=title, id=f"squad-{i}") for i, (title, text) in enumerate(paragraphs)])
    for q in [*ANSWERABLE, {"question": "What did Peskov say?", "answers": ["disapproval", "rejected"]}]:
        result = pipeline.ask(q["question"]).model_dump(mode="json", exclude_none=True)
        assert not result["abstained"], q["question"]
        check_answer_contract(result, pipeline)
    assert pipeline.ask(OFF_TOPIC).abstained


@pytest.mark.parametrize("question", [OFF_TOPIC] + [q["question"] for q in UNANSWERABLE])
def test_off_topic_question_abstains_without_citations(seed_pipeline, question):
    result = seed_pipeline.ask(question).model_dump(mode="json", exclude_none=True)
    assert result["abstained"] is True
    assert result["citations"] == []
    assert markers(result["answer"]) == []
    assert result["answer"] == ABSTAIN_TEXT
    assert result["passages"], "passages are still returned for inspection"


@pytest.mark.parametrize("question", [q["question"] for q in _dev()] + [
    "Who is Dmitry Peskov?", "How much will the UK commit per year?", "Ukraine", "NATO Article 5"])
def test_every_answer_obeys_the_citation_contract(seed_pipeline, question):
    result = seed_pipeline.ask(question, 5).model_dump(mode="json", exclude_none=True)
    check_answer_contract(result, seed_pipeline)
    assert set(result) >= {"answer", "abstained", "generator", "citations", "passages", "timings_ms"}
    assert set(result["timings_ms"]) == {"retrieve", "generate", "total"}
    assert "fallback" not in result
    # Citations quote sentences of the retrieved passages.
    for c in result["citations"]:
        assert any(p["chunk_id"] == c["chunk_id"] and p["start"] <= c["start"] and c["end"] <= p["end"]
                   for p in result["passages"])


# Near-topic questions: the article names these people and discusses the plan, but never reports
# what they said (rag/generation/speech.py); before it, each was answered with an unrelated sentence.
@pytest.mark.parametrize("question", ["What did Zelensky say about the plan?", "What did Putin say about the plan?",
                                      "What did Macron say?"])
def test_what_a_person_said_abstains_when_no_sentence_reports_it(seed_pipeline, question):
    result = seed_pipeline.ask(question).model_dump(mode="json", exclude_none=True)
    assert result["abstained"] is True, result["answer"]
    assert result["citations"] == []


@pytest.mark.parametrize("question, speech", [("What did Hegseth say?", "Hegseth publicly stated"),
                                              ("What did Trump say?", "Trump "),  # "issuing critical comments"
                                              ("What did Lavrov say?", "both expressing disapproval")])
def test_what_a_person_said_is_quoted_from_a_sentence_reporting_it(seed_pipeline, question, speech):
    from rag.generation.speech import reports_speech

    result = seed_pipeline.ask(question).model_dump(mode="json", exclude_none=True)
    assert not result["abstained"]
    check_answer_contract(result, seed_pipeline)
    quoted = result["citations"][0]["text"]
    assert speech in quoted and reports_speech(quoted, question.split()[2].lower())


def test_extractive_answer_respects_word_and_sentence_budget(make_seed_pipeline):
    pipeline = make_seed_pipeline(answer_max_sentences=1)
    result = pipeline.ask("On what date did Hegseth visit the airbase in Poland?").model_dump(mode="json", exclude_none=True)
    assert len(result["citations"]) == 1
    check_answer_contract(result, pipeline)


def test_no_passages_means_abstention(seed_pipeline):
    result = seed_pipeline.ask("What did Peskov say?", filters={"source": "nowhere/*"}).model_dump(mode="json", exclude_none=True)
    assert result["abstained"] and result["citations"] == [] and result["passages"] == []


def test_unknown_generator_is_refused(seed_pipeline):
    with pytest.raises(UnknownGeneratorError, match="gpt-9"):
        seed_pipeline.ask("What did Peskov say?", generator="gpt-9")


def test_cite_renumbers_by_first_use_and_drops_bad_markers(seed_pipeline):
    passages = seed_pipeline.search("Starmer Macron plan", 3)
    answer = cite("Alpha [S3]. Beta [S1, S3]. Gamma [S9]. Delta [S0] [S2].", passages, "openai")
    assert answer.text == "Alpha [1]. Beta [2][1]. Gamma. Delta [3]."
    assert [c.chunk_id for c in answer.citations] == [passages[2].chunk_id, passages[0].chunk_id,
                                                       passages[1].chunk_id]
    assert [c.id for c in answer.citations] == [1, 2, 3]
    only_bad = cite("Unsupported claim [S7].", passages, "openai")
    assert only_bad.abstained and only_bad.citations == []
    dont_know = cite("I don't know based on the documents. [S1]", passages, "openai")
    assert dont_know.abstained and dont_know.citations == []
