"""The quote that supports a claim: an LLM cites a whole passage (~1000 characters); the citation
quotes the passage's sentence that shares most of the claim's words (weighted by how rare they are),
with its neighbour when that adds words of the claim the first lacks."""
from __future__ import annotations

from ..index import Index
from ..lexical import tokenize, tokenize_cached
from ..retrieval import Passage


def supporting_span(index: Index, passage: Passage, claim: str) -> tuple[int, int]:
    """(start, end) in the passage's document: its sentence(s) best supporting `claim`, or the whole
    passage when no sentence shares a word with it (the model's wording says nothing then)."""
    s0, s1 = index.chunk_sentences[passage.row].tolist()
    if passage.row < 0 or s1 <= s0:
        return passage.start, passage.end
    claim_terms = set(tokenize([claim])[0])
    if not claim_terms:
        return passage.start, passage.end
    spans = [(int(a), int(b)) for _, a, b in index.sentences[s0:s1].tolist()]
    text = index.documents[int(index.sentences[s0][0])].text
    idf = index.bm25.idf(claim_terms)
    terms = [set(t) & claim_terms for t in tokenize_cached([text[a:b] for a, b in spans])]
    weight = [sum(idf[t] for t in ts) for ts in terms]
    best = max(range(len(spans)), key=lambda i: weight[i])
    if weight[best] <= 0:
        return passage.start, passage.end
    start, end = spans[best]
    neighbours = [i for i in (best - 1, best + 1) if 0 <= i < len(spans)]
    gains = {i: sum(idf[t] for t in terms[i] - terms[best]) for i in neighbours}
    extra = max(gains, key=gains.get, default=None)
    if extra is not None and gains[extra] > 0:
        start, end = min(start, spans[extra][0]), max(end, spans[extra][1])
    return start, end
