"""The non-LLM follow-up rule (fast tier)."""
from __future__ import annotations

import pytest

from rag.conversation import Turn, is_follow_up, standalone_query

PLAN = [Turn("user", "What is the Anglo-French peacekeeping plan?"), Turn("assistant", "It is ... [1]")]


@pytest.mark.parametrize("question", ["And the troops?", "What about Russia?", "How many troops?",
                                      "Did they agree?", "Why did he object to it?", "so?"])
def test_follow_ups(question):
    assert is_follow_up(question)


@pytest.mark.parametrize("question", ["What did Peskov say about the plan?", "Who leads the coalition of the willing?"])
def test_standalone_questions(question):
    assert not is_follow_up(question)
    assert standalone_query(question, PLAN) == question


def test_a_follow_up_gets_the_previous_questions_key_terms():
    assert standalone_query("How many troops?", PLAN) == "How many troops? Anglo-French peacekeeping plan"


def test_terms_the_question_has_are_not_repeated_and_no_history_means_no_rewrite():
    assert standalone_query("What about the plan?", PLAN) == "What about the plan? Anglo-French peacekeeping"
    assert standalone_query("How many troops?", []) == "How many troops?"
    assert standalone_query("How many troops?", [Turn("assistant", "Hello")]) == "How many troops?"
