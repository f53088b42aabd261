"""The offline default: quote the sentences of the retrieved passages that best answer the question.

Each candidate sentence gets a calibrated score (rag/scoring.py), shown as its citation's `score`: the
estimated probability that it contains the answer, from its cosine with the question (sentence vectors
stored at ingest), the share of the question's IDF mass it covers, its passage's calibrated score and
the share of the question in words the corpus never uses. Sentences are chosen by a per-question key
(`w_dense` * cosine + `w_lexical` * coverage + `w_phrase` * phrase coverage + `w_passage` * rescaled
passage score): the best one
(prose first: a caption, headline or reference line only when no prose sentence reaches
`prose_floor`), followed by the next best while they stay close and the answer stays under a word
budget. It abstains instead of citing weak evidence
when the estimated probability that the passages answer the question at all (scoring.ANSWERABLE_MODEL)
is under `abstain_threshold`, a threshold that means the same on any corpus.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import AsyncIterator, Sequence

import numpy as np

from ..documents import page_of
from ..embedding import Embedder
from ..index import Index
from ..lexical import tokenize_cached
from ..scoring import ANSWERABLE_MODEL, SENTENCE_MODEL, answerable_features, query_terms
from ..retrieval import Passage, Retriever
from ..abstention import CorpusThreshold, NullConfig
from . import Answer, Citation, Segment, abstain, text_pieces
from .evidence import is_prose
from .answer_type import AnswerType
from .speech import asked_speaker, reports_speech


@dataclass(frozen=True)
class ExtractiveConfig:
    # Choice among the retrieved sentences (tuned on SQuAD and COVID-QA together; ranking only, so a
    # per-question scale is fine here): w_dense * cosine + w_lexical * coverage + w_phrase * phrase
    # coverage + w_passage * passage score rescaled per question. Ranking by the calibrated score
    # instead cost 0.004 containment on both benchmarks; a logistic ranker fitted on both, more.
    w_dense: float = 0.5
    w_lexical: float = 0.5
    w_phrase: float = 0.1
    w_passage: float = 0.1
    w_type: float = 0.1  # per asked-for kind the sentence holds: a number, a name, a percentage (answer_type.py)
    document_order: bool = True  # sentences of the best one's document quoted in their order there
    abstain_threshold: float = 0.12  # on the estimated probability that the passages answer the question
    null_quantile: float = 0.8  # the corpus' own threshold (rag/abstention.py); 0: the base threshold alone
    null_top_k: int = 5  # passages a pseudo-question retrieves (the service's top_k)
    prose_floor: float = 0.05  # a prose sentence this likely to hold the answer is quoted before a non-prose one
    max_sentences: int = 2
    max_words: int = 75
    second_margin: float = 0.10  # a further sentence joins only if within this of the best key
    adjacent_margin: float = 0.20  # or within this when it is the best one's neighbour in its document
    speaker_check: bool = True  # "What did X say?" quotes only sentences reporting X's speech (speech.py)


@dataclass
class ScoredSentence:
    row: int
    passage: Passage
    start: int
    end: int
    score: float  # calibrated: the estimated probability that the sentence holds the answer
    rank_key: float = 0.0  # what sentences are chosen by (per question; see ExtractiveConfig)
    features: dict = field(default_factory=dict, repr=False)
    prose: bool = True  # see evidence.py


class ExtractiveGenerator:
    name = "extractive"

    def __init__(self, embedder: Embedder, config: ExtractiveConfig = ExtractiveConfig(), *,
                 retriever: "Retriever | None" = None, threshold_file: Path | None = None, threshold_key: str = ""):
        self.embedder = embedder
        self.config = config
        self.retriever = retriever
        # Without a retriever (no corpus to ask pseudo-questions of) the base threshold applies alone.
        self.threshold = CorpusThreshold(self._pseudo_answerable, config.abstain_threshold,
                                         NullConfig(quantile=config.null_quantile), path=threshold_file,
                                         key=threshold_key) \
            if retriever is not None and config.null_quantile > 0 else None

    def abstain_threshold(self, index: Index) -> float:
        """The threshold for this corpus: the base one, or stricter where near-topic questions the
        corpus cannot answer look answerable (rag/abstention.py)."""
        return self.config.abstain_threshold if self.threshold is None else self.threshold(index)

    def _pseudo_answerable(self, index: Index, question: str, exclude: np.ndarray) -> float:
        q = self.embedder.encode_query(question)
        passages = self.retriever.search(index, question, self.config.null_top_k, query_vector=q, exclude=exclude)
        return answerable(passages, [s.features for s in self.score_sentences(question, passages, index,
                                                                               query_vector=q)])

    def score_sentences(self, question: str, passages: Sequence[Passage], index: Index, *,
                        query_vector: np.ndarray | None = None) -> list[ScoredSentence]:
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
        q = self.embedder.encode_query(question) if query_vector is None else query_vector
        dense = index.sentence_matrix(rows) @ q
        spans = index.sentences[rows]
        terms = query_terms(question, index.bm25)
        texts = [index.documents[d].text[a:b] for d, a, b in spans.tolist()]
        fused = np.array([p.fused for p in owners], dtype=np.float64)
        lo, hi = fused.min(), fused.max()
        pnorm = (fused - lo) / (hi - lo) if hi > lo else np.ones_like(fused)
        c = self.config
        asked = AnswerType(question) if c.w_type else None
        out = []
        for r, p, (d, a, b), cos, toks, pn, text in zip(rows, owners, spans.tolist(), dense.tolist(),
                                                        tokenize_cached(texts), pnorm.tolist(), texts):
            f = {"cosine": float(cos), "coverage": terms.coverage(toks), "passage": float(p.score),
                 "unknown": terms.unknown}
            key = (c.w_dense * f["cosine"] + c.w_lexical * f["coverage"] + c.w_phrase * terms.phrase_coverage(toks)
                   + c.w_passage * pn + (c.w_type * asked.matches(text) if asked else 0.0))
            out.append(ScoredSentence(row=r, passage=p, start=int(a), end=int(b), score=SENTENCE_MODEL(**f),
                                      rank_key=key, features=f, prose=is_prose(text)))
        return out

    def generate(self, question: str, passages: Sequence[Passage], index: Index, *,
                 query_vector: np.ndarray | None = None) -> Answer:
        c = self.config
        scored = self.score_sentences(question, passages, index, query_vector=query_vector)
        if not scored or answerable(passages, [s.features for s in scored]) < self.abstain_threshold(index):
            return abstain(self.name)
        speaker = asked_speaker(question) if c.speaker_check else None
        if speaker is not None:  # what a named person said: only a sentence reporting their speech answers
            scored = [s for s in scored if reports_speech(_text(index, s), speaker, _previous(index, s.row))]
            if not scored:
                return abstain(self.name)
        # Prose that answers comes first; a caption, headline or reference line only when none does.
        scored.sort(key=lambda s: (not (s.prose and s.score >= c.prose_floor), -s.rank_key))
        chosen = [scored[0]]
        words = _words(index, scored[0])
        for s in scored[1:]:
            if len(chosen) >= c.max_sentences:
                break
            adjacent = abs(s.row - scored[0].row) == 1 and \
                index.sentences[s.row][0] == index.sentences[scored[0].row][0]
            margin = max(c.adjacent_margin, c.second_margin) if adjacent else c.second_margin
            if s.rank_key < scored[0].rank_key - margin or (scored[0].prose and not s.prose):
                continue
            w = _words(index, s)
            if words + w <= c.max_words:
                chosen.append(s)
                words += w
        if c.document_order and len(chosen) > 1:  # a gold span across two adjacent sentences reads whole
            first = int(index.sentences[chosen[0].row][0])
            chosen.sort(key=lambda s: (int(index.sentences[s.row][0]) != first, int(index.sentences[s.row][0]),
                                       s.start))
        citations, segments = [], []
        for i, s in enumerate(chosen, start=1):
            doc = index.documents[index.sentences[s.row][0]]
            quote = doc.text[s.start:s.end]
            citations.append(Citation(id=i, chunk_id=s.passage.chunk_id, document_id=doc.id, source=doc.source,
                                      title=doc.title, text=quote, start=s.start, end=s.end, score=s.score,
                                      page=page_of(doc, s.start)))
            if segments:
                segments.append(Segment(" "))
            segments.append(Segment(quote, (i,)))
        return Answer.of(segments, generator=self.name, citations=citations)

    async def astream(self, question: str, passages: Sequence[Passage], index: Index, *,
                      query_vector: np.ndarray | None = None) -> AsyncIterator[str | Answer]:
        from anyio import to_thread

        answer = await to_thread.run_sync(lambda: self.generate(question, passages, index, query_vector=query_vector))
        for piece in text_pieces(answer.text):
            yield piece
        yield answer

    def close(self) -> None:
        """Nothing to release: the embedder belongs to the pipeline."""


def answerable(passages: Sequence[Passage], sentence_features: Sequence[dict]) -> float:
    """The estimated probability that the passages answer the question (rag/scoring.py)."""
    return ANSWERABLE_MODEL(**answerable_features(passages, sentence_features)) if passages else 0.0


def _text(index: Index, s: ScoredSentence) -> str:
    return index.documents[index.sentences[s.row][0]].text[s.start:s.end]


def _previous(index: Index, row: int) -> str:
    """The sentence before sentence `row` in its document ("" at its start)."""
    if row <= 0:
        return ""
    (d, _, _), (pd, a, b) = index.sentences[row].tolist(), index.sentences[row - 1].tolist()
    return index.documents[pd].text[a:b] if pd == d else ""


def _words(index: Index, s: ScoredSentence) -> int:
    return len(_text(index, s).split())
