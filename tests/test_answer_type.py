"""What kind of thing a question asks for (rag/generation/answer_type.py): fast, no model."""
import pytest

from rag.generation.answer_type import AnswerType


@pytest.mark.parametrize("question, number, name, share", [
    ("How many children were infected by HIV-1 in 2008-2009?", True, False, False),
    ("When was the virus first identified?", True, False, False),
    ("What percentage of patients developed fever?", True, False, True),
    ("Who proposed the peacekeeping plan?", False, True, False),
    ("Which French leader worked on the plan with Starmer?", False, False, False),
    ("What is the main cause of HIV-1 infection in children?", False, False, False)])
def test_the_kinds_a_question_asks_for(question, number, name, share):
    asked = AnswerType(question)
    assert (asked.number, asked.name, asked.share) == (number, name, share)
    assert bool(asked) == (number or name or share)


def test_a_sentence_holds_the_asked_for_kinds():
    assert AnswerType("How many children were infected?").matches("More than 400,000 children were infected.") == 1
    assert AnswerType("How many children were infected?").matches("Many children were infected.") == 0
    pct = AnswerType("What percentage of patients had a fever?")
    assert pct.matches("Fever was seen in 88.7% of patients.") == 2  # a number and a percentage
    who = AnswerType("Who proposed the plan?")
    assert who.matches("The plan was proposed by Keir Starmer.") == 1
    assert who.matches("The plan was proposed last year.") == 0  # its opening capital is no name
    assert who.matches("It was the Plan.") == 0  # a word of the question is no answer
    assert AnswerType("Why did it fail?").matches("It failed in 2020 because Smith left.") == 0


def test_two_sentences_of_one_document_are_quoted_in_their_order_there(fake_pipeline):
    """The second-best sentence may come first in the document: quoted in document order, a gold
    span across the two reads whole (COVID-QA has such answers)."""
    from rag.documents import Document

    text = ("The trial enrolled 1,200 volunteers in March. "
            "The volunteers in the trial received two doses of the vaccine, and the trial reported how many "
            "volunteers in the trial developed antibodies after two doses of the vaccine.")
    import dataclasses

    p = fake_pipeline(abstain_threshold=0.0, abstain_null_quantile=0.0)
    p.ingest_documents([Document(id="t", source="t.txt", title="Trial", text=text)])
    generator = p.service.generators.get("extractive")
    question = "How many volunteers in the trial developed antibodies after two doses of the vaccine?"
    orders = {}
    for document_order in (False, True):  # both sentences quoted; the second one ranks first
        generator.config = dataclasses.replace(generator.config, second_margin=10.0, document_order=document_order)
        result = p.ask(question)
        assert not result.abstained and len(result.citations) == 2, result.answer
        orders[document_order] = [c.start for c in result.citations]
    assert orders[False] == sorted(orders[False], reverse=True)
    assert orders[True] == sorted(orders[True])
