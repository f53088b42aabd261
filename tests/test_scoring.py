"""Calibrated scores and which sentences count as prose evidence."""
from __future__ import annotations

import pytest

from rag.generation.evidence import is_prose
from rag.scoring import PASSAGE_MODEL, SENTENCE_MODEL, Logistic, query_terms

from support import OFF_TOPIC


class _Terms:
    """The BM25 look-ups query_terms needs, over a hand-made document frequency table (no titles, so the
    scored IDF is the text IDF)."""

    def __init__(self, df: dict[str, int], n: int = 100):
        self.df, self.n = df, n

    def document_frequency(self, term: str) -> int:
        return self.df.get(term, 0)

    def idf(self, terms):
        import math

        return {t: math.log(1 + (self.n - self.df.get(t, 0) + 0.5) / (self.df.get(t, 0) + 0.5)) for t in terms}

    scored_idf = idf


def test_coverage_is_the_share_of_the_questions_idf_mass():
    terms = query_terms("Which receptor does the spike protein bind?", _Terms({"receptor": 5, "spike": 2,
                                                                                "protein": 40, "bind": 10}))
    assert terms.coverage(["receptor", "spike", "protein", "bind"]) == pytest.approx(1.0)
    assert 0 < terms.coverage(["protein"]) < terms.coverage(["spike"]) < 1, "a rare word weighs more"
    assert terms.coverage([]) == 0.0 and terms.unknown == 0.0


def test_unknown_is_the_share_of_words_no_document_contains():
    terms = query_terms("spike zanzibar", _Terms({"spike": 2}))
    assert 0.4 < terms.unknown < 0.6
    assert query_terms("the of and", _Terms({})).total == 0.0  # no content word: nothing to cover


def test_models_are_probabilities_that_grow_with_evidence():
    weak = dict(sentence_cosine=0.1, cosine=0.1, bm25_share=0.0, coverage=0.0, unknown=1.0)
    strong = dict(sentence_cosine=0.8, cosine=0.6, bm25_share=1.0, coverage=1.0, unknown=0.0)
    assert 0.0 <= PASSAGE_MODEL(**weak) < 0.1 < 0.5 < PASSAGE_MODEL(**strong) <= 1.0
    assert SENTENCE_MODEL(cosine=0.1, coverage=0.0, passage=0.0, unknown=1.0) < 0.01
    assert SENTENCE_MODEL(cosine=0.8, coverage=1.0, passage=0.95, unknown=0.0) > 0.5
    assert Logistic(("x",), (1.0,), 0.0)(x=1e9) == pytest.approx(1.0)


@pytest.mark.parametrize("text", [
    "Figure 3. Attack rates by age group",
    "Table 2: Baseline characteristics of mothers and infants.",
    "By Jane Smith and Tom Jones",
    "DOI: 10.1371/journal.pone.0007211",
    "License: cc-by",
    "12. Smith AB, Jones C. Receptor usage of coronaviruses. J Virol 2003;77:1-10.",
    "Russia resists proposed Anglo-French peacekeeping plan in Ukraine",
    "Tracers are seen in the night sky as Ukrainian servicemen fire at the drone, in Kyiv, Ukraine February 8, 2025",
])
def test_captions_headlines_bylines_and_references_are_not_prose(text):
    assert not is_prose(text)


@pytest.mark.parametrize("text", [
    "Endothelial cells [2] express the ACE2 receptor that the spike protein binds [29, 30].",
    "Smith et al. (2003) found that the receptor is expressed in lung tissue.",
    "The figure shows that attack rates were highest in young adults.",
    "Peskov said the plan was \u201can unacceptable threat.\u201d",
    "He was profoundly influenced by a math teacher Martin Sekuli\u0107.:32",  # Wikipedia page reference

])
def test_sentences_are_prose(text):
    assert is_prose(text)


# -- on the seed index --------------------------------------------------------------------------
def test_scores_mean_the_same_whatever_the_question(seed_pipeline):
    """An unrelated top passage no longer shows 1.0: scores are probabilities, not rescaled ranks."""
    off = seed_pipeline.search(OFF_TOPIC, 5)
    on = seed_pipeline.search("What role has Keir Starmer said the UK is ready to play?", 5)
    assert max(p.score for p in off) < 0.2
    assert on[0].score > 0.5 > max(p.score for p in off)
    answer = seed_pipeline.ask("What role has Keir Starmer said the UK is ready to play?")
    assert not answer.abstained and 0.2 < answer.citations[0].score <= 1.0


def test_natural_questions_about_the_seed_are_answered(seed_pipeline):
    """On a one-document corpus every chunk carries the title, so title words score near zero in BM25;
    the BM25 share compares the score with an ideal computed with the same IDF, so they are answered."""
    for question in ("What is the Anglo-French peacekeeping plan?", "Who is Dmitry Peskov?",
                     "What does Russia think of the plan?"):
        result = seed_pipeline.ask(question)
        assert not result.abstained, question


def test_phrase_coverage_rewards_the_questions_words_side_by_side():
    terms = query_terms("What is the incubation period of the virus?",
                        _Terms({"incub": 3, "period": 20, "virus": 50}))
    together = ["the", "incub", "period", "of", "the", "virus"]
    apart = ["period", "of", "growth", "incub", "virus"]
    from rag.lexical import tokenize

    together, apart = tokenize([" ".join(together)])[0], tokenize([" ".join(apart)])[0]
    assert terms.coverage(together) == pytest.approx(terms.coverage(apart))
    assert terms.phrase_coverage(together) == pytest.approx(1.0) and terms.phrase_coverage(apart) < 0.5
    assert terms.sentence_match(together) > terms.sentence_match(apart) > 0
    assert terms.sentence_match(["unrelated"]) == 0.0
    assert query_terms("virus", _Terms({"virus": 5})).phrase_coverage(["virus"]) == 0.0  # no pair to match
