"""The offline default: quote the sentences of the retrieved passages that best answer the question.

Each candidate sentence is scored by
    w_dense * cosine(question, sentence)            (sentence vectors stored at ingest)
  + w_lexical * idf-weighted share of question terms in the sentence
  + w_passage * the passage's normalised retrieval score.
The answer is the best sentence, followed by the next best while they stay close in score and the
answer stays under a word budget. When the best sentence scores under `abstain_threshold`, it
abstains instead of citing weak evidence.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import AsyncIterator, Sequence

import numpy as np

from ..embedding import Embedder
from ..index import Index
from ..lexical import tokenize
from ..retrieval import Passage
from . import Answer, Citation, Segment, abstain, text_pieces


@dataclass(frozen=True)
class ExtractiveConfig:
    w_dense: float = 0.5
    w_lexical: float = 0.4
    w_passage: float = 0.1
    abstain_threshold: float = 0.44
    max_sentences: int = 2
    max_words: int = 75
    second_margin: float = 0.08  # a further sentence joins only if within this of the best score


@dataclass
class ScoredSentence:
    row: int
    passage: Passage
    start: int
    end: int
    score: float


class ExtractiveGenerator:
    name = "extractive"

    def __init__(self, embedder: Embedder, config: ExtractiveConfig = ExtractiveConfig()):
        self.embedder = embedder
        self.config = config

    def score_sentences(self, question: str, passages: Sequence[Passage], index: Index) -> list[ScoredSentence]:
        rows: list[int] = []
        owners: list[Passage] = []
        seen: set[int] = set()
        for p in passages:
            s0, s1 = index.chunk_sentences[p.row].tolist()
            for r in range(s0, s1):
                if r not in seen:
                    seen.add(r)
                    rows.append(r)
                    owners.append(p)
        if not rows:
            return []
        q = self.embedder.encode_query(question)
        dense = index.sentence_matrix(rows) @ q
        spans = index.sentences[rows]
        q_terms = set(tokenize([question])[0])
        idf = index.bm25.idf(q_terms)
        total = sum(idf.values()) or 1.0
        texts = [index.documents[d].text[a:b] for d, a, b in spans.tolist()]
        lexical = np.array([sum(idf[t] for t in q_terms & set(toks)) / total for toks in tokenize(texts)])
        pscores = np.array([p.score for p in owners], dtype=np.float64)
        lo, hi = pscores.min(), pscores.max()
        pnorm = (pscores - lo) / (hi - lo) if hi > lo else np.ones_like(pscores)
        c = self.config
        score = c.w_dense * dense + c.w_lexical * lexical + c.w_passage * pnorm
        return [ScoredSentence(row=r, passage=p, start=int(a), end=int(b), score=float(s))
                for r, p, (_, a, b), s in zip(rows, owners, spans.tolist(), score)]

    def generate(self, question: str, passages: Sequence[Passage], index: Index) -> Answer:
        scored = sorted(self.score_sentences(question, passages, index), key=lambda s: -s.score)
        c = self.config
        if not scored or scored[0].score < c.abstain_threshold:
            return abstain(self.name)
        chosen = [scored[0]]
        words = _words(index, scored[0])
        for s in scored[1:]:
            if len(chosen) >= c.max_sentences or s.score < scored[0].score - c.second_margin:
                break
            w = _words(index, s)
            if words + w <= c.max_words:
                chosen.append(s)
                words += w
        citations, segments = [], []
        for i, s in enumerate(chosen, start=1):
            doc = index.documents[index.sentences[s.row][0]]
            quote = doc.text[s.start:s.end]
            citations.append(Citation(id=i, chunk_id=s.passage.chunk_id, document_id=doc.id, source=doc.source,
                                      title=doc.title, text=quote, start=s.start, end=s.end, score=s.score))
            if segments:
                segments.append(Segment(" "))
            segments.append(Segment(quote, (i,)))
        return Answer.of(segments, generator=self.name, citations=citations)


    async def astream(self, question: str, passages: Sequence[Passage], index: Index) -> AsyncIterator[str | Answer]:
        from anyio import to_thread

        answer = await to_thread.run_sync(self.generate, question, passages, index)
        for piece in text_pieces(answer.text):
            yield piece
        yield answer


def _words(index: Index, s: ScoredSentence) -> int:
    doc = index.documents[index.sentences[s.row][0]]
    return len(doc.text[s.start:s.end].split())
