"""Questions that ask what a named person said, and sentences that report that person's speech.

"What did Zelensky say about the plan?" shares every content word with an article that names
Zelensky and discusses the plan, so no lexical or embedding feature tells that the article never
reports Zelensky saying anything (scoring.py leaves the asking verb out of the question's terms on
purpose: the answer quotes what was said, not the verb). What the question asks for is a statement
*by that person*, so the answer's sentence must report one: the person's name with a speech cue
in the same clause ("Peskov ... expressing disapproval", "Hegseth publicly stated", "said Peskov"),
not the name as the object of a preposition ("comments towards Zelensky"). The extractive generator
quotes only such sentences for such a question, and abstains when the passages hold none.

Deliberately narrow: only "what did/does/has NAME say/tell/state/comment", with a proper-noun
subject; "What did Luther think/believe/call ..." (SQuAD has many, answered by "He ...") is left to
the general scorer.
"""
from __future__ import annotations

import re

# what [did|does|do|has|have|had] SUBJECT [say|said|says|tell|told|state|stated|comment] (end or more)
_ASKED = re.compile(r"^\s*what\s+(?:did|does|do|has|have|had)\s+(?P<subject>.+?)\s+"
                    r"(?:say|said|says|tell|told|state|stated|comment|commented)\b", re.IGNORECASE)
_NOT_NAMES = frozenset(("he", "she", "they", "it", "we", "you", "i", "this", "that", "these", "those", "the",
                        "a", "an", "his", "her", "their", "its", "our", "my", "your", "some", "most", "many",
                        "one", "people", "someone", "anyone", "everyone", "scientists", "researchers", "experts"))
_WORD = re.compile(r"[\w’'\-]+|[^\w\s]", re.UNICODE)
# Words that report speech: stems matched at a word's start, minus the words that share them.
_SPEECH = re.compile(r"^(?:say|said|stated|statement|stating|told|tell|comment|remark|express|warn|announc|declar"
                     r"|claim|argu|insist|assur|urged|urges|urging|stressed|stressing|noted|explain|added|adding"
                     r"|describ|label|criticis|criticiz|condemn|prais|accus|denied|denies|deny|denying|admit"
                     r"|promis|pledg|vow|replied|replies|reply|respond|wrote|written|writes|writing|tweet"
                     r"|interview|speech|spoke$|spoken|quote|quoting|according|suggest|reject|dismiss|welcom"
                     r"|mention|confirm|reiterat|acknowledg|predict|encourag|assert|recall|recount|confided$|confides$"
                     r"|complain|boast|conced|contend|lament|pointed$|points$|call(?:s|ed|ing)?$)")
_QUOTES = frozenset("\"“”‘’:")
_PREPOSITIONS = frozenset(("to", "towards", "toward", "with", "against", "at", "about", "on", "of", "over",
                           "into", "between", "under", "for", "like", "than", "beside", "among"))
_CLAUSE_END = frozenset((",", ";", ".", "!", "?", "(", ")"))
_SAID_BEFORE = frozenset(("said", "says", "stated", "added", "wrote", "told", "explained", "noted", "warned",
                          "tweeted", "argued", "insisted", "claimed", "announced", "declared", "replied"))
WINDOW = 8  # words after the name that a speech cue may come within (in the same clause)


def asked_speaker(question: str) -> str | None:
    """The (last) name of the person whose words the question asks for, lower case, or None when
    it does not ask what a named person said."""
    m = _ASKED.match(question)
    if not m:
        return None
    words = m.group("subject").split()
    if not 1 <= len(words) <= 4 or words[0].lower() in _NOT_NAMES:
        return None
    cased = question != question.lower()
    if cased and not all(w[:1].isupper() for w in words):  # "did the study", "did Tesla incorrectly"
        return None
    name = re.sub(r"(?:['’]s?)$", "", words[-1]).strip(".,").lower()
    return name or None


def _is_speech(word: str, following: str) -> bool:
    if not _SPEECH.match(word):
        return False
    if word.startswith("call"):  # "called for", "calls on"; not "a plan called X"
        return following in ("for", "on")
    if word in ("pointed", "points"):  # "pointed out"
        return following == "out"
    if word == "according":
        return following == "to"
    return True


def reports_speech(sentence: str, name: str, previous: str = "") -> bool:
    """Whether `sentence` reports speech by the person `name` (lower case): the name with a speech
    cue or a quotation after it in the same clause (an appositive such as ", 80," skipped), or a speech
    verb just before it ("said Peskov", "according to Peskov"); not when the name is the object of a
    preposition. Or "he/she ... stated" when the `previous` sentence names the person as a subject."""
    tokens = _WORD.findall(sentence)
    if any(_cue_after(tokens, i) for i in _subject_positions(tokens, name, said_before=True)):
        return True
    return bool(previous) and any(True for _ in _subject_positions(_WORD.findall(previous), name)) and any(
        _cue_after(tokens, i) for i, t in enumerate(tokens) if t.lower() in _PRONOUNS)


_PRONOUNS = frozenset(("he", "she"))
_SAID = -1  # a position meaning "a speech verb stands just before the name"


def _subject_positions(tokens: list[str], name: str, said_before: bool = False):
    """Positions of `name` that are not the object of a preposition (`_SAID` for "said Peskov")."""
    lower = [t.lower() for t in tokens]
    for i, t in enumerate(lower):
        if re.sub(r"['’]s?$", "", t) != name:
            continue
        j = i - 1  # walk back over the rest of the name and titles ("French President Emmanuel Macron")
        while j >= 0 and tokens[j][:1].isupper():
            j -= 1
        before = lower[j] if j >= 0 else ""
        if before in _SAID_BEFORE or (before == "to" and j >= 1 and lower[j - 1] == "according"):
            yield _SAID if said_before else i  # "said Peskov", "according to Peskov"
        elif before not in _PREPOSITIONS:  # not "comments towards Zelensky", "with ... Macron"
            yield i
        elif before == "with" and i + 1 < len(lower) and lower[i + 1].endswith("ing"):
            yield i  # "with Trump issuing critical comments": the subject of what follows


def _cue_after(tokens: list[str], i: int) -> bool:
    """A speech cue or a quotation within `WINDOW` words after position `i`, in the same clause."""
    if i == _SAID:
        return True
    lower = [t.lower() for t in tokens]
    k, end = i + 1, min(len(tokens), i + 1 + WINDOW)
    if k < len(tokens) and lower[k] == ",":  # an appositive: "Kellogg, 80, has encouraged"
        close = [m for m in range(k + 1, min(len(tokens), k + 1 + WINDOW)) if lower[m] in _CLAUSE_END]
        close = close if close and lower[close[0]] == "," else []
        if close:
            k, end = close[0] + 1, min(len(tokens), close[0] + 1 + WINDOW)
    for k in range(k, end):
        if tokens[k] in _QUOTES:
            return True
        if lower[k] in _CLAUSE_END:
            return False
        if _is_speech(lower[k], lower[k + 1] if k + 1 < len(lower) else ""):
            return True
    return False
