"""Dataset loading: our JSONL, SQuAD v1.1/v2.0 (gzip or not), and clear errors naming the line."""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from eval.datasets import DatasetError, hold_out_articles, load_dataset

SQUAD_V2 = {"version": "v2.0", "data": [
    {"title": "Moon", "paragraphs": [
        {"context": "The Moon orbits the Earth.", "qas": [
            {"id": "q1", "question": "What does the Moon orbit?", "answers": [{"text": "the Earth", "answer_start": 16}],
             "is_impossible": False},
            {"id": "q2", "question": "What does the Moon eat?", "answers": [], "is_impossible": True}]},
        {"context": "It has no air.", "qas": [
            {"id": "q3", "question": "What does it lack?", "answers": [{"text": "air", "answer_start": 10},
                                                                   {"text": "air", "answer_start": 10}]}]}]},
    {"title": "Sun", "paragraphs": [
        {"context": "The Sun is a star.", "qas": [
            {"id": "q4", "question": "What is the Sun?", "answers": [{"text": "a star", "answer_start": 11}]}]}]},
]}


def test_squad_paragraphs_become_documents(tmp_path: Path):
    path = tmp_path / "squad.json.gz"
    path.write_bytes(gzip.compress(json.dumps(SQUAD_V2).encode()))
    ds = load_dataset(path)
    assert [d.id for d in ds.corpus] == ["Moon#0", "Moon#1", "Sun#0"]
    assert ds.corpus[1].text == "It has no air."
    by_id = {i.id: i for i in ds.items}
    assert by_id["q1"].gold_documents == ("Moon#0",) and by_id["q1"].answerable
    assert not by_id["q2"].answerable and by_id["q2"].gold_documents == ()
    assert by_id["q3"].answers == ("air",), "duplicate answers collapse"
    assert len(ds.sha256) == 64


def test_holdout_makes_balanced_unanswerables(tmp_path: Path):
    path = tmp_path / "squad.json"
    path.write_text(json.dumps(SQUAD_V2))
    ds = hold_out_articles(load_dataset(path), every=2)  # removes "Moon" (index 0)
    assert {d.metadata["article"] for d in ds.corpus} == {"Sun"}
    unanswerable = [i for i in ds.items if not i.answerable]
    answerable = [i for i in ds.items if i.answerable]
    assert {i.id for i in unanswerable} == {"q1", "q2", "q3"}
    assert [i.id for i in answerable] == ["q4"]


def test_jsonl_format(tmp_path: Path):
    path = tmp_path / "qa.jsonl"
    path.write_text('{"id": "a", "question": "Q?", "answers": ["x"], "gold_documents": ["d"]}\n\n'
                    '{"id": "b", "question": "Unanswerable?", "answers": []}\n')
    ds = load_dataset(path)
    assert [(i.id, i.answerable, i.gold_documents) for i in ds.items] == [("a", True, ("d",)), ("b", False, ())]


@pytest.mark.parametrize("line, message", [
    ('{"id": "a", "question": "Q?"', "qa.jsonl:2: not valid JSON"),
    ('{"id": "b", "question": ""}', "qa.jsonl:2: 'question'"),
    ('{"id": "c", "question": "Q?", "answers": "x"}', "qa.jsonl:2: 'answers'"),
    ('["not", "an", "object"]', "qa.jsonl:2: expected a JSON object"),
    ('{"id": "ok", "question": "again?"}', "qa.jsonl:2: duplicate id"),
])
def test_jsonl_errors_name_the_line(tmp_path: Path, line: str, message: str):
    path = tmp_path / "qa.jsonl"
    path.write_text('{"id": "ok", "question": "Fine?"}\n' + line + "\n")
    with pytest.raises(DatasetError, match=message.replace("?", r"\?")):
        load_dataset(path)


def test_broken_files_are_refused_clearly(tmp_path: Path):
    bad_gz = tmp_path / "x.json.gz"
    bad_gz.write_bytes(b"\x1f\x8b" + b"garbage")
    with pytest.raises(DatasetError, match="broken gzip"):
        load_dataset(bad_gz)
    not_squad = tmp_path / "y.json"
    not_squad.write_text('{"foo": 1}')
    with pytest.raises(DatasetError, match="not a SQuAD JSON file"):
        load_dataset(not_squad)
    with pytest.raises(DatasetError, match="cannot be read"):
        load_dataset(tmp_path / "missing.jsonl")
    with pytest.raises(DatasetError, match="unknown dataset format"):
        load_dataset(tmp_path / "z.csv")


def test_calibration_fits_on_a_holdout_split_disjoint_from_the_reported_one():
    from eval.calibrate import hold_out
    from eval.datasets import Dataset, EvalItem, hold_out_articles
    from rag.documents import make_document

    articles = [f"a{n:02d}" for n in range(12)]
    items = [EvalItem(id=f"{a}-q{k}", question=f"question {k} on {a}?", answers=("x",), gold_documents=(f"{a}-p",),
                      article=a) for a in articles for k in range(3)]
    corpus = [make_document(f"paragraph of {a}", source=a, id=f"{a}-p", metadata={"article": a}) for a in articles]
    dataset = Dataset(name="toy", items=items, corpus=corpus)

    def removed(split):
        return {d.metadata["article"] for d in corpus} - {d.metadata["article"] for d in split.corpus}

    reported, fitted = hold_out_articles(dataset, 6), hold_out(dataset, 6, 3)
    assert removed(reported) == {"a00", "a06"} and removed(fitted) == {"a03", "a09"}
    unanswerable = {i.id for i in fitted.items if not i.answerable}
    assert unanswerable and unanswerable.isdisjoint({i.id for i in reported.items if not i.answerable})
    assert sum(i.answerable for i in fitted.items) == len(unanswerable)  # balanced, as rag eval's split
