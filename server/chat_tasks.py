"""Background prompts that chat front ends send through the chat endpoint: a title for the chat, tags,
follow-up suggestions, search queries, autocompletion. They are not questions about the documents, so a
retrieval answer ("The documents don't say.") would be wrong for them.

Recognised by their task markers (Open WebUI's templates: a `### Task:` heading, the chat in
`<chat_history>` tags, and the JSON key the output must have). With an LLM configured they are passed to
it unchanged; without one (or when it fails) they get a short, valid answer in the JSON shape the front
end parses: a title made from the first question, no tags, no follow-ups, no queries, no completion.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass

_TASK = re.compile(r"^\s*#{2,4}\s*task\s*:", re.IGNORECASE | re.MULTILINE)
_HISTORY = re.compile(r"<chat_history>(.*?)</chat_history>", re.IGNORECASE | re.DOTALL)
# The JSON key each task's output must carry, in the order they are tried; the first key the prompt's
# output section names decides.
_KEYS = ("follow_ups", "tags", "title", "queries", "text")
_KEY = re.compile(r'["\u201c](follow_ups|tags|title|queries|text)["\u201d]\s*:')
# Older title templates ask for plain text: "Create a concise, 3-5 word title ... for the chat history".
_PLAIN_TITLE = re.compile(r"\b(3-5|three to five)[- ]word (title|phrase)\b.*\bchat history\b", re.IGNORECASE | re.DOTALL)
_TRAILING = {"a", "an", "the", "of", "to", "in", "on", "for", "and", "or", "about", "with", "by", "at", "from"}
_USER_LINE = re.compile(r"^\s*user\s*:\s*(.+)$", re.IGNORECASE | re.MULTILINE)
MAX_TITLE_WORDS = 6


@dataclass(frozen=True)
class ChatTask:
    kind: str  # follow_ups | tags | title | queries | text | plain_title
    prompt: str

    def offline_reply(self) -> str:
        """A short, valid answer without an LLM."""
        if self.kind == "title":
            return json.dumps({"title": title_from(self.first_question())}, ensure_ascii=False)
        if self.kind == "plain_title":
            return title_from(self.first_question())
        if self.kind == "text":
            return json.dumps({"text": ""})
        return json.dumps({self.kind: []})

    def first_question(self) -> str:
        history = _HISTORY.search(self.prompt)
        scope = history.group(1) if history else self.prompt
        first = _USER_LINE.search(scope)
        return first.group(1).strip() if first else ""


def detect(text: str) -> ChatTask | None:
    """The task a front end's background prompt asks for, or None for an ordinary question."""
    if len(text) < 40:
        return None
    has_task, has_history = bool(_TASK.search(text)), bool(_HISTORY.search(text))
    if has_task or has_history:
        output = text[text.lower().rfind("### output"):] if "### output" in text.lower() else text
        found = _KEY.search(output) or _KEY.search(text)
        if found:
            return ChatTask(found.group(1), text)
    if has_history and _PLAIN_TITLE.search(text):
        return ChatTask("plain_title", text)
    return None


def title_from(question: str) -> str:
    """A few words of the question: "What did Peskov say about the plan?" -> "What did Peskov say"."""
    words = re.sub(r"[\s?!.:;]+$", "", " ".join(question.split())).split(" ")
    words = words[:MAX_TITLE_WORDS]
    while len(words) > 1 and words[-1].lower() in _TRAILING:  # no title ending in "about the"
        words.pop()
    title = " ".join(words).strip()
    return title or "New chat"
