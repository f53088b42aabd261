"""Questions asking what a named person said (rag/generation/speech.py): fast, no model."""
import pytest

from rag.generation.speech import asked_speaker, reports_speech

ZELENSKY = ("This comes as the relationship between Ukrainian President Volodymyr Zelensky and former US President "
            "Donald Trump soures, with Trump issuing critical comments towards Zelensky during a recent address.")
PESKOV = ("However, Russia has strongly rejected this idea, with Kremlin spokesman Dmitry Peskov and Foreign "
          "Minister Sergei Lavrov both expressing disapproval.")
MACRON = ("The proposal, hatched by Starmer in conjunction with French President Emmanuel Macron, aims to address "
          "concerns about potential abandonment of Ukraine by the US under Trump’s leadership.")
KELLOGG = ("US Special Presidential Envoy for Ukraine and Russia Keith Kellogg, 80, has encouraged Europe to join "
           "the conversation about the Ukraine-Russia conflict.")


@pytest.mark.parametrize("question, name", [
    ("What did Zelensky say about the plan?", "zelensky"), ("what did Peskov say", "peskov"),
    ("what did peskov say", "peskov"), ("What did Roland Bainton say about Luther's position?", "bainton"),
    ("What has Trump said?", "trump"), ("What did Tesla tell Brisbane he didn't believe in?", "tesla"),
    ("What did the study say?", None), ("What did he say?", None), ("What did Tesla's teachers say?", None),
    ("What did Luther think of Purgatory?", None), ("What did Luther call these donations?", None),
    ("Who said it?", None), ("What is the incubation period?", None)])
def test_asked_speaker(question, name):
    assert asked_speaker(question) == name


@pytest.mark.parametrize("sentence, name, expected", [
    (PESKOV, "peskov", True), (PESKOV, "lavrov", True),
    (ZELENSKY, "zelensky", False),  # named, but as the object of the comments
    (ZELENSKY, "trump", True),
    (MACRON, "macron", False), (MACRON, "starmer", False),
    (KELLOGG, "kellogg", True),  # the appositive ", 80," is skipped
    ("US Defence Secretary Hegseth publicly stated that the borders are unrealistic.", "hegseth", True),
    ("The plan is unrealistic, said Peskov.", "peskov", True),
    ("According to Peskov, the plan is a threat.", "peskov", True),
    ("Starmer has said the UK is ‘ready to play a leading role’.", "starmer", True),
    ("Trump visited a plant called Stargate.", "trump", False),
    ("Trump has called for higher spending.", "trump", True),
    ("Peskov met Lavrov in Moscow.", "peskov", False),
    ("Roland Bainton, noted church historian and Luther biographer, wrote \"One could wish\".", "bainton", True),
    ("Luther confided to Michael Stiefel on 11 August 1526: \"My Katie is obliging.\"", "luther", True),
    ("Luther, while Gottfried Fritschel pointed out in 1867 that it refers to a man.", "fritschel", True)])
def test_reports_speech(sentence, name, expected):
    assert reports_speech(sentence, name) is expected


def test_a_pronoun_reports_the_speech_of_the_person_the_previous_sentence_names():
    stated = "However, he ultimately stated that they will not have a final say in the resolution."
    assert reports_speech(stated, "kellogg", KELLOGG)
    assert not reports_speech(stated, "kellogg", "The talks went on.")
    assert not reports_speech(stated, "zelensky", ZELENSKY)  # Zelensky is not that sentence's subject
