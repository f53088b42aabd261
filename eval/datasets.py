"""Evaluation datasets: our JSONL format, SQuAD JSON (v1.1 and v2.0), and SQuAD paragraphs as a corpus.

JSONL, one object a line:
    {"id": str, "question": str, "answers": [str, ...], "gold_documents": [str, ...]?, "answerable": bool?}
`answerable` defaults to whether `answers` is non-empty.
"""
from __future__ import annotations

import gzip
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from rag.documents import Document


class DatasetError(ValueError):
    """A dataset file that cannot be read; the message names the file and line."""


@dataclass(frozen=True)
class EvalItem:
    id: str
    question: str
    answers: tuple[str, ...] = ()
    gold_documents: tuple[str, ...] = ()
    answerable: bool = True
    article: str | None = None


@dataclass
class Dataset:
    name: str
    items: list[EvalItem]
    corpus: list[Document] = field(default_factory=list)  # empty: use the served index
    sha256: str = ""


def _read_bytes(path: Path) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DatasetError(f"{path}: cannot be read ({exc.strerror or exc})") from exc
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise DatasetError(f"{path}: broken gzip file ({exc})") from exc
    return data


def load_jsonl(path: Path) -> Dataset:
    raw = _read_bytes(path)
    items: list[EvalItem] = []
    seen: set[str] = set()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path}: not UTF-8 ({exc})") from exc
    for no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError as exc:
            raise DatasetError(f"{path}:{no}: not valid JSON ({exc})") from exc
        if not isinstance(obj, dict):
            raise DatasetError(f"{path}:{no}: expected a JSON object")
        question, answers = obj.get("question"), obj.get("answers", [])
        if not isinstance(question, str) or not question.strip():
            raise DatasetError(f"{path}:{no}: 'question' must be a non-empty string")
        if not isinstance(answers, list) or not all(isinstance(a, str) for a in answers):
            raise DatasetError(f"{path}:{no}: 'answers' must be a list of strings")
        gold = obj.get("gold_documents") or []
        if not isinstance(gold, list) or not all(isinstance(g, str) for g in gold):
            raise DatasetError(f"{path}:{no}: 'gold_documents' must be a list of strings")
        answerable = obj.get("answerable", bool(answers))
        if not isinstance(answerable, bool):
            raise DatasetError(f"{path}:{no}: 'answerable' must be true or false")
        item_id = str(obj.get("id", f"line-{no}"))
        if item_id in seen:
            raise DatasetError(f"{path}:{no}: duplicate id {item_id!r}")
        seen.add(item_id)
        items.append(EvalItem(id=item_id, question=question, answers=tuple(answers), gold_documents=tuple(gold),
                              answerable=answerable))
    if not items:
        raise DatasetError(f"{path}: no questions")
    return Dataset(name=path.name, items=items, sha256=hashlib.sha256(raw).hexdigest())


def squad_document_id(title: str, paragraph_index: int) -> str:
    return f"{title}#{paragraph_index}"


def load_squad(path: Path, *, limit_articles: int | None = None) -> Dataset:
    """SQuAD v1.1/v2.0: every paragraph becomes a document; a question's gold document is its paragraph."""
    raw = _read_bytes(path)
    try:
        obj = json.loads(raw)
        articles = obj["data"]
    except (ValueError, KeyError, TypeError) as exc:
        raise DatasetError(f"{path}: not a SQuAD JSON file (expected an object with 'data'): {exc}") from exc
    items: list[EvalItem] = []
    corpus: list[Document] = []
    for a_no, article in enumerate(articles[:limit_articles] if limit_articles else articles):
        try:
            title = article["title"]
            for p_no, para in enumerate(article["paragraphs"]):
                doc_id = squad_document_id(title, p_no)
                corpus.append(Document(id=doc_id, source=f"squad/{doc_id}", title=title.replace("_", " "),
                                       text=para["context"], metadata={"article": title}))
                for qa in para["qas"]:
                    impossible = bool(qa.get("is_impossible", False))
                    answers = tuple(dict.fromkeys(a["text"] for a in qa.get("answers", [])))
                    items.append(EvalItem(id=str(qa["id"]), question=qa["question"], answers=answers,
                                          gold_documents=() if impossible else (doc_id,),
                                          answerable=not impossible, article=title))
        except (KeyError, TypeError) as exc:
            raise DatasetError(f"{path}: article {a_no} is malformed (missing {exc})") from exc
    if not items:
        raise DatasetError(f"{path}: no questions")
    return Dataset(name=path.name, items=items, corpus=corpus, sha256=hashlib.sha256(raw).hexdigest())


def load_dataset(path: str | Path, *, limit_articles: int | None = None) -> Dataset:
    path = Path(path)
    name = path.name.lower()
    if name.endswith((".jsonl", ".jsonl.gz")):
        return load_jsonl(path)
    if name.endswith((".json", ".json.gz")):
        return load_squad(path, limit_articles=limit_articles)
    raise DatasetError(f"{path}: unknown dataset format (expected .jsonl or SQuAD .json, optionally .gz)")


def hold_out_articles(dataset: Dataset, every: int) -> Dataset:
    """SQuAD v2.0-style unanswerables from v1.1: remove every `every`-th article from the corpus; its
    questions become unanswerable. An equal number of answerable questions from the remaining
    articles (evenly spaced, deterministic) keeps the set balanced, as in SQuAD v2.0."""
    articles = list(dict.fromkeys(i.article for i in dataset.items))
    removed = set(articles[::every])
    unanswerable = [EvalItem(id=i.id, question=i.question, answers=(), gold_documents=(), answerable=False,
                             article=i.article) for i in dataset.items if i.article in removed]
    answerable = [i for i in dataset.items if i.article not in removed]
    step = max(1, len(answerable) // max(1, len(unanswerable)))
    chosen = answerable[::step][:len(unanswerable)]
    corpus = [d for d in dataset.corpus if d.metadata.get("article") not in removed]
    items = sorted(unanswerable + chosen, key=lambda i: i.id)
    return Dataset(name=f"{dataset.name} (holdout 1/{every})", items=items, corpus=corpus, sha256=dataset.sha256)
