"""The OpenAI-compatible endpoint's details that chat front ends rely on, with the official `openai`
client against a real server: token usage (also as the final streamed chunk with
`stream_options.include_usage`), and background prompts (title, tags, follow-ups) answered in the JSON
shapes Open WebUI parses, passed through to the LLM when one is configured."""
from __future__ import annotations

import json

import openai
import pytest

from server.chat_tasks import detect, title_from

pytestmark = pytest.mark.integration
PESKOV = "What did Peskov say?"

# Open WebUI's default task prompts (its config.py templates, with the chat history filled in).
HISTORY = "<chat_history>\nUSER: What did Peskov say about the plan?\nASSISTANT: Russia rejected it [1].\n</chat_history>"
TITLE_PROMPT = f"""### Task:
Generate a concise, 3-5 word title with an emoji summarizing the chat history.
### Guidelines:
- The title should clearly represent the main theme or subject of the conversation.
- Write the title in the chat's primary language; default to English if multilingual.
### Output:
JSON format: {{ "title": "your concise title here" }}
### Examples:
- {{ "title": "\U0001F4C9 Stock Market Trends" }}
### Chat History:
{HISTORY}"""
TAGS_PROMPT = f"""### Task:
Generate 1-3 broad tags categorizing the main themes of the chat history, along with 1-3 more specific subtopic tags.
### Guidelines:
- Start with high-level domains (e.g. Science, Technology, Philosophy, Arts, Politics, Business, Health, Sports, Entertainment, Education)
### Output:
JSON format: {{ "tags": ["tag1", "tag2", "tag3"] }}
### Chat History:
{HISTORY}"""
FOLLOW_UP_PROMPT = f"""### Task:
Suggest 3-5 relevant follow-up questions or prompts that the user might naturally ask next in this conversation as a **user**, based on the chat history, to help continue or deepen the discussion.
### Guidelines:
- Write all follow-up questions from the user's point of view, directed to the assistant.
### Output:
JSON format: {{ "follow_ups": ["Question 1?", "Question 2?", "Question 3?"] }}
### Chat History:
{HISTORY}"""
OLD_TITLE_PROMPT = f"""Create a concise, 3-5 word title with an emoji as a title for the chat history, in the given language. Suitable Emojis for the summary can be used to enhance understanding but avoid quotation marks or special formatting. RESPOND ONLY WITH THE TITLE TEXT.

{HISTORY}"""


@pytest.fixture
def oai(api) -> openai.OpenAI:
    return openai.OpenAI(base_url=str(api.base_url) + "/v1", api_key="unused", max_retries=0, timeout=60)


def test_usage_counts_tokens_with_the_embedding_tokenizer(oai, seed_pipeline):
    resp = oai.chat.completions.create(model="rag", messages=[{"role": "user", "content": PESKOV}])
    content = resp.choices[0].message.content
    from transformers import AutoTokenizer  # the model's own tokenizer, as sentence-transformers loads it

    tokenizer = AutoTokenizer.from_pretrained(seed_pipeline.embedder.model_dir, local_files_only=True)
    assert resp.usage.completion_tokens == len(tokenizer(content, add_special_tokens=False)["input_ids"])
    # The prompt is the question plus the retrieved passages the answer was made from.
    assert resp.usage.prompt_tokens > 100
    assert resp.usage.total_tokens == resp.usage.prompt_tokens + resp.usage.completion_tokens


def test_stream_options_include_usage_sends_a_final_usage_chunk(oai):
    chunks = list(oai.chat.completions.create(model="rag", stream=True, stream_options={"include_usage": True},
                                              messages=[{"role": "user", "content": PESKOV}]))
    *answer, last = chunks
    assert last.choices == [] and last.usage.completion_tokens > 0 and last.usage.prompt_tokens > 0
    assert all(c.usage is None for c in answer) and answer[-1].choices[0].finish_reason == "stop"
    content = "".join(c.choices[0].delta.content or "" for c in answer)
    non_stream = oai.chat.completions.create(model="rag", messages=[{"role": "user", "content": PESKOV}])
    assert content == non_stream.choices[0].message.content and last.usage == non_stream.usage
    # Without the option there is no usage chunk (OpenAI's behaviour).
    plain = list(oai.chat.completions.create(model="rag", stream=True, messages=[{"role": "user", "content": PESKOV}]))
    assert all(c.choices for c in plain)


def test_bad_stream_options_are_refused(api):
    r = api.post("/v1/chat/completions", json={"model": "rag", "stream": True, "stream_options": {"include_usage": "yes"},
                                               "messages": [{"role": "user", "content": PESKOV}]})
    assert r.status_code == 422 and r.json()["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize("stream", [False, True])
def test_background_prompts_get_the_json_front_ends_expect(oai, stream):
    def reply(prompt: str) -> str:
        messages = [{"role": "user", "content": prompt}]
        if not stream:
            return oai.chat.completions.create(model="rag", messages=messages).choices[0].message.content
        chunks = oai.chat.completions.create(model="rag", messages=messages, stream=True)
        return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)

    assert json.loads(reply(TITLE_PROMPT)) == {"title": "What did Peskov say"}
    assert json.loads(reply(TAGS_PROMPT)) == {"tags": []}
    assert json.loads(reply(FOLLOW_UP_PROMPT)) == {"follow_ups": []}
    assert reply(OLD_TITLE_PROMPT) == "What did Peskov say"


def test_background_prompts_go_to_the_llm_when_one_is_configured(make_seed_pipeline, serve_pipeline, llm):
    llm.reply = '{"title": "\U0001F1F7\U0001F1FA Kremlin rejects peacekeepers"}'
    pipeline = make_seed_pipeline(generator="openai", openai_base_url=llm.base_url, openai_model="stand-in")
    with serve_pipeline(pipeline) as client:
        messages = [{"role": "user", "content": TITLE_PROMPT}]
        r = client.post("/v1/chat/completions", json={"model": "rag", "messages": messages})
        assert r.json()["choices"][0]["message"]["content"] == llm.reply
        assert llm.requests[-1]["body"]["messages"] == messages  # passed through unchanged
        assert "Sources:" not in r.json()["choices"][0]["message"]["content"]
        llm.mode = "error"  # the LLM fails: the offline answer, not an error
        r = client.post("/v1/chat/completions", json={"model": "rag", "messages": messages})
        assert r.status_code == 200 and json.loads(r.json()["choices"][0]["message"]["content"]) == {
            "title": "What did Peskov say"}


def test_usage_is_the_llm_servers_own_when_it_answered(make_seed_pipeline, serve_pipeline, llm):
    pipeline = make_seed_pipeline(generator="openai", openai_base_url=llm.base_url, openai_model="stand-in")
    with serve_pipeline(pipeline) as client:
        r = client.post("/v1/chat/completions", json={
            "model": "rag", "messages": [{"role": "user", "content": "What did Peskov say?"}]})
        assert r.status_code == 200 and r.json()["rag"]["generator"] == "openai"
        assert r.json()["usage"] == {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120}
        llm.mode = "error"  # the extractive fallback answered: counted with our tokenizer instead
        r = client.post("/v1/chat/completions", json={
            "model": "rag", "messages": [{"role": "user", "content": "What did Peskov say?"}]})
        usage = r.json()["usage"]
        assert r.json()["rag"]["generator"] == "extractive" and usage["prompt_tokens"] > 0
        assert usage != {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120}


def test_ordinary_questions_are_not_taken_for_tasks():
    for question in (PESKOV, "What is the task: generate a title for the plan?",
                     "### Notes\nWhat did Peskov say about the title of the plan?",
                     'Explain the JSON {"title": "x"} format used in the documents, please'):
        assert detect(question) is None
    assert detect(TITLE_PROMPT).kind == "title" and detect(TAGS_PROMPT).kind == "tags"
    assert detect(FOLLOW_UP_PROMPT).kind == "follow_ups" and detect(OLD_TITLE_PROMPT).kind == "plain_title"
    assert title_from("   ") == "New chat"
