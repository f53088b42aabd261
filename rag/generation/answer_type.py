"""What kind of thing a question asks for, and whether a sentence holds one.

A sentence that repeats the question's words is not an answer unless it also holds what the question
asks for: "How many children were infected?" wants a number, "Who proposed it?" a name, "What
percentage ...?" a percentage. The extractive generator adds a small bonus to the key it chooses
sentences by when a sentence holds the asked-for kind (chosen on SQuAD-12 and COVID-QA together,
docs/quality.md step 10). Cues only, in English; a question of no known kind gets no bonus.
"""
from __future__ import annotations

import re

_NUMBER_Q = re.compile(r"\b(how (many|much|long|old|often|large|big|far|high|frequent)|what (percentage|proportion|"
                       r"percent|number|year|rate|age|ratio|fraction)|when|which year|what is the (number|rate|"
                       r"percentage|proportion|mean|median|average))\b", re.IGNORECASE)
_NAME_Q = re.compile(r"^\s*(who|whom|whose)\b|\bwhich (person|people|scientist|author|organi[sz]ation|company|"
                     r"country|city)\b", re.IGNORECASE)
_SHARE_Q = re.compile(r"\b(percent|percentage|proportion|what fraction|rate)\b", re.IGNORECASE)
# A capitalised word that does not open the sentence (nor follow a full stop inside it).
_CAPITALISED = re.compile(r"(?<!^)(?<![.!?] )\b[A-Z][a-z]+\w*")
_WORDS = re.compile(r"\w+")


class AnswerType:
    """The kinds `question` asks for; `matches(sentence)` counts how many of them the sentence holds."""

    def __init__(self, question: str):
        self.number = bool(_NUMBER_Q.search(question))
        self.name = bool(_NAME_Q.search(question))
        self.share = bool(_SHARE_Q.search(question))
        self._question_words = {w.lower() for w in _WORDS.findall(question)} if self.name else set()

    def __bool__(self) -> bool:
        return self.number or self.name or self.share

    def matches(self, sentence: str) -> int:
        n = 0
        if self.number and any(c.isdigit() for c in sentence):
            n += 1
        if self.name and any(w.lower() not in self._question_words for w in _CAPITALISED.findall(sentence)):
            n += 1
        if self.share and ("%" in sentence or "percent" in sentence.lower()):
            n += 1
        return n
