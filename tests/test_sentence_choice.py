"""How the extractive generator joins a second sentence (rag/generation/extractive.py), with the
stand-in embedder: fast, no model."""
import dataclasses

from rag.documents import Document

TEXT = ("The trial enrolled 1,200 volunteers in March. "
        "The volunteers in the trial received two doses of the vaccine, and the trial reported how many "
        "volunteers in the trial developed antibodies after two doses of the vaccine. "
        "A vaccine is given in doses.")
QUESTION = "How many volunteers in the trial developed antibodies after two doses of the vaccine?"


def _pipeline(fake_pipeline):
    p = fake_pipeline(abstain_threshold=0.0, abstain_null_quantile=0.0)
    p.ingest_documents([Document(id="t", source="t.txt", title="Trial", text=TEXT)])
    return p, p.service.generators.get("extractive")


def test_two_sentences_of_one_document_are_quoted_in_their_order_there(fake_pipeline):
    """The second-best sentence may come first in the document: quoted in document order, a gold
    span across the two reads whole (COVID-QA has such answers)."""
    p, generator = _pipeline(fake_pipeline)
    orders = {}
    for document_order in (False, True):  # both sentences quoted; the second one ranks first
        generator.config = dataclasses.replace(generator.config, second_margin=0.0, adjacent_margin=10.0,
                                               document_order=document_order)
        result = p.ask(QUESTION)
        assert not result.abstained and len(result.citations) == 2, result.answer
        orders[document_order] = [c.start for c in result.citations]
    assert orders[False] == sorted(orders[False], reverse=True)
    assert orders[True] == sorted(orders[True])


def test_the_best_sentences_neighbour_joins_within_the_wider_margin(fake_pipeline):
    p, generator = _pipeline(fake_pipeline)
    generator.config = dataclasses.replace(generator.config, second_margin=0.0, adjacent_margin=10.0)
    quoted = [c.text for c in p.ask(QUESTION).citations]
    assert len(quoted) == 2 and quoted[0].startswith("The trial enrolled"), quoted  # the neighbour, not the last
    generator.config = dataclasses.replace(generator.config, second_margin=0.0, adjacent_margin=0.0)
    assert len(p.ask(QUESTION).citations) == 1
