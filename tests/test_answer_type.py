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

