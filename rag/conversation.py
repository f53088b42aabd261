"""Multi-turn: turn a follow-up question into a standalone query for retrieval.

Conversations are held by the client; each request carries the earlier turns (`history`).

The rule used without an LLM: a follow-up that leans on earlier turns gets the key terms of the
previous user question appended. A question counts as a follow-up when it opens with a connective
("and", "also", "what about", "how about", "then", "so") or a pronoun that points back ("he", "she",
"it", "they", "this", "that", "those", "these", "his", "her", "its", "their"), or has at most one
content word of its own. Key terms are the previous question's words minus stop words and
question words, in order. So "how many troops?" after "What is the Anglo-French plan?" retrieves
with "how many troops? Anglo-French plan".
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, Sequence

_WORD = re.compile(r"[\w'’-]+", re.UNICODE)
_CONNECTIVES = ("and", "also", "what about", "how about", "then", "so", "but")
_POINTERS = {"he", "she", "it", "they", "this", "that", "those", "these", "his", "her", "its", "their", "them",
             "him", "there"}
_STOP = {
    "a", "an", "the", "and", "or", "but", "if", "of", "to", "in", "on", "at", "by", "for", "with", "about", "as",
    "is", "are", "was", "were", "be", "been", "being", "do", "does", "did", "have", "has", "had", "will", "would",
    "can", "could", "should", "may", "might", "shall", "what", "which", "who", "whom", "whose", "when", "where",
    "why", "how", "many", "much", "say", "said", "says", "tell", "me", "us", "you", "i", "we", "my", "our", "your",
    "from", "into", "than", "then", "so", "also", "not", "no", "any", "some", "there", "it", "its", "this",
    "that", "these", "those", "he", "she", "they", "his", "her", "their", "them", "him", "please", "s",
}


@dataclass(frozen=True)
class Turn:
    role: Literal["user", "assistant", "system"]
    content: str


def content_words(text: str) -> list[str]:
    return [w for w in _WORD.findall(text) if w.lower().strip("'’-") not in _STOP and len(w) > 1]


def is_follow_up(question: str) -> bool:
    q = question.strip().lower()
    words = [w.lower() for w in _WORD.findall(q)]
    if not words:
        return False
    if any(q.startswith(c + " ") or q == c for c in _CONNECTIVES) or words[0] in _POINTERS:
        return True
    if any(w in _POINTERS for w in words):
        return True
    return len(content_words(question)) <= 1


def standalone_query(question: str, history: Sequence[Turn]) -> str:
    """The question itself, or, for a follow-up, the question plus the previous question's key terms."""
    previous = [t.content for t in history if t.role == "user" and t.content.strip()]
    if not previous or not is_follow_up(question):
        return question
    own = {w.lower() for w in content_words(question)}
    carried = [w for w in dict.fromkeys(content_words(previous[-1])) if w.lower() not in own]
    return f"{question} {' '.join(carried)}".strip() if carried else question
