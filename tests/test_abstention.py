"""The abstention threshold calibrated against the corpus (rag/abstention.py), with the stand-in embedder."""
from __future__ import annotations

import json

import dataclasses
import random

import numpy as np
import pytest

from rag.abstention import CorpusThreshold, NullConfig, pseudo_queries, threshold_from
from rag.documents import Document

_WORDS = [f"{a}{b}{c}" for a in "bdfgklmnprstvz" for b in "aeiou" for c in "lmnrst"]


def _sentence(rng: random.Random, vocabulary: list[str]) -> str:
    return " ".join(rng.choice(vocabulary) for _ in range(12)).capitalize() + "."


def _corpus(shared_topic: bool, documents: int = 12) -> list[Document]:
    """Documents of six sentences: all drawn from one small vocabulary (one topic), or each from its own."""
    rng = random.Random(7)
    topic = rng.sample(_WORDS, 25)
    out = []
    for d in range(documents):
        vocabulary = topic if shared_topic else _WORDS[d * 20:(d + 1) * 20]
        text = " ".join(_sentence(rng, vocabulary) for _ in range(6))
        out.append(Document(id=f"doc{d}", source=f"doc{d}.txt", title=f"Document {d}", text=text))
    return out


def _pipeline(fake_pipeline, documents, **settings):
    p = fake_pipeline(chunk_size=200, **settings)
    p.ingest_documents(documents)
    return p


def test_pseudo_questions_leave_their_own_document_out(fake_pipeline):
    p = _pipeline(fake_pipeline, _corpus(shared_topic=True))
    index = p.index
    queries = pseudo_queries(index, NullConfig(queries=10, words=6))
    assert 5 <= len(queries) <= 10
    assert [q.text for q in queries] == [q.text for q in pseudo_queries(index, NullConfig(queries=10, words=6))]
    for q in queries:
        assert len(q.text.split()) == 6
        docs = {index.chunks.locate(int(r))[1] for r in q.exclude}
        assert len(docs) == 1  # exactly one document, and all of its chunks
        (doc,) = docs
        own = [r for r in range(len(index.chunks)) if index.chunks.locate(r)[1] == doc]
        assert sorted(q.exclude.tolist()) == own
        assert q.text in index.documents[doc].text
        passages = p.retriever.search(index, q.text, 5, exclude=q.exclude)
        assert passages and all(ps.row not in set(q.exclude.tolist()) for ps in passages)


def test_the_parts_of_one_work_are_left_out_together(fake_pipeline):
    docs = _corpus(shared_topic=True)
    docs[:3] = [dataclasses.replace(d, title="One paper") for d in docs[:3]]  # three paragraphs of one work
    p = _pipeline(fake_pipeline, docs)
    index = p.index
    paper = {r for r in range(len(index.chunks)) if index.chunks.locate(r)[1] < 3}
    queries = pseudo_queries(index, NullConfig(queries=12, words=6))
    from_paper = [q for q in queries if paper & set(q.exclude.tolist())]
    assert from_paper and all(set(q.exclude.tolist()) == paper for q in from_paper)
    assert len(pseudo_queries(index, NullConfig(queries=12, words=6, same_title=False))[0].exclude) < len(paper)
    docs = [dataclasses.replace(d, title="Untitled") for d in docs]  # a title every document shares names no work
    shared = fake_pipeline(p.settings.data_dir.parent / "untitled", chunk_size=200)
    shared.ingest_documents(docs)
    for q in pseudo_queries(shared.index, NullConfig(queries=12, words=6)):
        assert len({shared.index.chunks.locate(int(r))[1] for r in q.exclude}) == 1


def test_with_few_documents_a_pseudo_question_leaves_out_its_chunk_and_neighbours(fake_pipeline):
    p = _pipeline(fake_pipeline, _corpus(shared_topic=True, documents=2))
    index = p.index
    for q in pseudo_queries(index, NullConfig(queries=10, words=6)):
        rows = q.exclude.tolist()
        assert 1 <= len(rows) <= 3 and rows == list(range(rows[0], rows[0] + len(rows)))
        assert len({index.chunks.locate(r)[1] for r in rows}) == 1


def test_threshold_is_the_base_or_the_nulls_quantile_and_is_kept_until_the_corpus_changes(fake_pipeline):
    p = _pipeline(fake_pipeline, _corpus(shared_topic=True))
    calls = []

    def score(index, question, exclude):
        calls.append(question)
        return 0.9 if len(calls) % 2 else 0.1

    t = CorpusThreshold(score, 0.12, NullConfig(queries=10, quantile=0.5))
    assert t(p.index) == pytest.approx(threshold_from(t.null, 0.12, 0.5))
    assert 0.12 < t(p.index) < 0.9
    asked = len(calls)
    p.put_documents(_corpus(shared_topic=True, documents=13)[12:])  # one document more: under 20% more chunks
    t(p.index)
    assert len(calls) == asked
    before = t(p.index)
    p.put_documents(_corpus(shared_topic=False, documents=20)[12:])  # many more: computed again,
    assert t(p.index) == before  # in the background, the previous threshold answering meanwhile
    t.wait(30)
    assert len(calls) > asked
    assert threshold_from([0.01, 0.02], 0.12, 0.5) == 0.12
    assert threshold_from([], 0.12, 0.5) == 0.12


def test_a_corpus_of_lookalike_documents_asks_at_most_even_odds(fake_pipeline):
    """Templated documents (records, logs) make every pseudo-question look answerable; the threshold
    stops at 0.5, so a question the corpus does answer with 0.78 (the seed's Peskov question beside 60
    records, measured) is still answered."""
    p = _pipeline(fake_pipeline, _corpus(shared_topic=True))
    t = CorpusThreshold(lambda index, question, exclude: 0.99, 0.12, NullConfig(queries=10))
    assert t(p.index) == 0.5 and len(t.null) and min(t.null) == 0.99
    assert threshold_from([0.99] * 5, 0.12, 0.8) == 0.5


def test_a_corpus_threshold_is_kept_on_disk_for_the_settings_it_was_computed_with(fake_pipeline, tmp_path):
    p = _pipeline(fake_pipeline, _corpus(shared_topic=True))
    calls = []

    def score(index, question, exclude):
        calls.append(question)
        return 0.9 if len(calls) % 2 else 0.1

    path = tmp_path / "abstention.json"
    first = CorpusThreshold(score, 0.12, NullConfig(queries=10, quantile=0.5), path=path, key="a")
    value = first(p.index)
    asked = len(calls)
    assert asked > 0 and path.exists()
    again = CorpusThreshold(score, 0.12, NullConfig(queries=10, quantile=0.5), path=path, key="a")
    assert again(p.index) == value and len(calls) == asked  # read back: no pseudo-question asked
    other = CorpusThreshold(score, 0.12, NullConfig(queries=10, quantile=0.5), path=path, key="b")
    other(p.index)
    assert len(calls) > asked  # made with other settings: computed again
    path.write_text("{not json")
    damaged = CorpusThreshold(score, 0.12, NullConfig(queries=10, quantile=0.5), path=path, key="b")
    asked = len(calls)
    damaged(p.index)
    assert len(calls) > asked  # a damaged file is only a cache


def test_an_ingest_leaves_the_threshold_for_the_next_process(fake_pipeline, tmp_path):
    data = tmp_path / "kept"
    p = fake_pipeline(data, chunk_size=200)
    p.ingest_documents(_corpus(shared_topic=True))
    stored = json.loads((p.settings.index_dir / "abstention.json").read_text())
    later = fake_pipeline(data, chunk_size=200)
    later.load(build_from_seeds=False)
    g = later.generators.get("extractive")
    assert g.threshold.null.tolist() == stored["null"] and len(stored["null"]) > 0  # read, not computed
    assert g.abstain_threshold(later.index) == pytest.approx(stored["threshold"])


def test_a_single_topic_corpus_gets_a_stricter_threshold_than_a_diverse_one(fake_pipeline, tmp_path):
    one_topic = _pipeline(fake_pipeline, _corpus(shared_topic=True))
    diverse = fake_pipeline(tmp_path / "diverse", chunk_size=200)
    diverse.ingest_documents(_corpus(shared_topic=False))
    strict = one_topic.generators.get("extractive").abstain_threshold(one_topic.index)
    base = diverse.generators.get("extractive").abstain_threshold(diverse.index)
    assert base == pytest.approx(0.12)
    assert strict > base + 0.1
    off = fake_pipeline(tmp_path / "off", chunk_size=200, abstain_null_quantile=0)
    off.ingest_documents(_corpus(shared_topic=True))
    assert off.generators.get("extractive").abstain_threshold(off.index) == pytest.approx(0.12)


def test_excluded_rows_are_never_retrieved(fake_pipeline):
    p = _pipeline(fake_pipeline, _corpus(shared_topic=True))
    index = p.index
    everything = np.arange(len(index.chunks))
    assert p.retriever.search(index, "anything at all", 5, exclude=everything) == []
    first = p.retriever.search(index, index.chunks.text(0)[:60], 3)[0].row
    assert all(ps.row != first for ps in p.retriever.search(index, index.chunks.text(0)[:60], 3,
                                                            exclude=np.array([first])))


def test_the_seed_articles_threshold_comes_from_its_own_chunks(seed_pipeline):
    g = seed_pipeline.generators.get("extractive")
    threshold = g.abstain_threshold(seed_pipeline.index)
    assert len(g.threshold.null) == len(pseudo_queries(seed_pipeline.index, g.threshold.config)) >= 5
    assert threshold == pytest.approx(threshold_from(g.threshold.null, 0.12, g.threshold.config.quantile))
    assert seed_pipeline.ask("What will the weather be in Paris tomorrow?").abstained
    assert not seed_pipeline.ask("What role has Keir Starmer said the UK is ready to play?").abstained


def test_the_parameter_search_counts_abstentions_as_rag_eval_does():
    from eval.calibrate_null import abstention

    split = {"probs": np.array([0.05, 0.2, 0.5, 0.1, 0.9]), "answerable": np.array([False, False, True, True, True])}
    assert abstention(split, 0.15) == pytest.approx((0.5, 0.5, 1 / 3))  # abstains on 0.05 and 0.1
    assert abstention(split, 0.01) == pytest.approx((0.0, 0.0, 0.0))


def test_the_eval_report_shows_the_corpus_threshold_when_it_has_one():
    from eval.report import table

    assert "abst t" in table({"default": {"hit@1": 0.5, "abstain_threshold": 0.384}}).splitlines()[0]
    assert "abst t" not in table({"default": {"hit@1": 0.5}})  # over HTTP the threshold is not known
