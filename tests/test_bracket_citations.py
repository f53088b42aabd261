"""Documents that carry their own bracketed reference numbers ("[2]", "[29, 30]", "[1-3]"): on every
route the answer's `[n]` are markers only, the answer is rendered from its segments, and citations
quote the stored text exactly."""
from __future__ import annotations

import json

import openai
import pytest

from rag.documents import make_document
from rag.generation import Segment, neutralise, render
from rag.generation.openai_chat import build_messages, cite
from rag.generation.reply import ReplyParser

from support import check_answer_contract, markers

PAPER = (
    "Coronavirus entry into host cells.\n\n"
    "Endothelial cells [2] express the ACE2 receptor that the spike protein binds [29, 30]. "
    "Earlier reports [1-3] found the receptor in lung tissue as well [4].\n\n"
    "The incubation period of the disease was estimated at 5.2 days [12] in early Wuhan cases [13, 14].\n"
)
QUESTION = "Which cells express the ACE2 receptor that the spike protein binds?"


@pytest.fixture(scope="module")
def paper_pipeline(tmp_path_factory, embedder):
    from rag.config import Settings
    from rag.pipeline import Pipeline
    from support import SEEDS

    pipeline = Pipeline(Settings(data_dir=tmp_path_factory.mktemp("brackets"), seed_dir=SEEDS), embedder=embedder)
    pipeline.ingest_documents([make_document(PAPER, source="papers/ace2.txt", title="ACE2 [7] review")])
    return pipeline


# -- rendering and parsing (fast) ------------------------------------------------------------
def test_rendering_neutralises_literal_bracketed_numbers_only():
    segments = [Segment("Cells [2] bind [29, 30] and [1-3]", (1,)), Segment(" "), Segment("[12a] too.", (2,))]
    assert render(segments) == "Cells (2) bind (29, 30) and (1-3) [1] (12a) too. [2]"
    assert markers(render(segments)) == [1, 2]
    assert neutralise("[citation needed] and [a] stay") == "[citation needed] and [a] stay"
    assert neutralise("needed [32, [147] [148] ].") == "needed (32, (147) (148) )."  # nested, seen in COVID-QA


@pytest.mark.parametrize("step", [1, 2, 3, 7])
def test_reply_parser_streams_the_same_text_as_the_whole_reply(step):
    reply = ("Endothelial cells [2] express it [S1]. The receptor [29, 30] binds [S2][S1]. Bad [S9] and [1-3]. "
             "Nested [32, [147] [148] ] too [S3].")
    whole = ReplyParser(3)
    text = whole.feed(reply) + whole.finish()
    parser = ReplyParser(3)
    pieces = [parser.feed(reply[i:i + step]) for i in range(0, len(reply), step)] + [parser.finish()]
    assert "".join(pieces) == text == render(parser.segments)
    assert text == ("Endothelial cells (2) express it [1]. The receptor (29, 30) binds [2][1]. Bad and (1-3). "
                    "Nested (32, (147) (148) ) too [3].")
    assert parser.segments[0] == Segment("Endothelial cells [2] express it", (1,))


def test_prompt_labels_cannot_collide_with_the_passages_brackets(paper_pipeline):
    passages = paper_pipeline.search(QUESTION, 3)
    prompt = build_messages(QUESTION, passages)[-1]["content"]
    assert "[S1] (ACE2 [7] review)" in prompt and "Endothelial cells [2]" in prompt
    sneaky = [p for p in passages]
    sneaky[0].text = "A passage quoting [S2] itself."  # a document that contains a label
    assert "[S2] itself" not in build_messages(QUESTION, sneaky)[-1]["content"]


def test_llm_reply_copying_bracketed_numbers_keeps_the_contract(paper_pipeline):
    passages = paper_pipeline.search(QUESTION, 3)
    answer = cite("Endothelial cells [2] express ACE2 [S1], also in lung [1-3] [4].", passages, "openai")
    assert answer.text == "Endothelial cells (2) express ACE2 [1], also in lung (1-3) (4)."
    assert len(answer.citations) == 1
    bare = cite("Endothelial cells express ACE2 [1].", passages, "openai")  # bare numbers are not labels
    assert bare.abstained and bare.citations == []


# -- every route over real HTTP ------------------------------------------------------------
def _check(body: dict, pipeline) -> None:
    check_answer_contract(body, pipeline)
    assert not body["abstained"]
    assert body["segments"] and any(s["citations"] for s in body["segments"])


def test_ask_json_answer_with_bracketed_evidence(paper_pipeline, serve_pipeline):
    with serve_pipeline(paper_pipeline) as client:
        body = client.post("/ask", json={"question": QUESTION}).json()
    _check(body, paper_pipeline)
    quote = body["citations"][0]["text"]
    assert "[2]" in quote and "[29, 30]" in quote, "citations keep the stored text exactly"
    assert body["answer"].startswith("Endothelial cells (2) express") and markers(body["answer"])[0] == 1
    assert body["segments"][0] == {"text": quote, "citations": [1]}


def test_sse_stream_with_bracketed_evidence(paper_pipeline, serve_pipeline):
    from test_chat import stream_ask

    with serve_pipeline(paper_pipeline) as client:
        r, events = stream_ask(client, {"question": QUESTION})
    final = next(d for n, d in events if n == "citations")
    assert "".join(d["text"] for n, d in events if n == "delta") == final["answer"]
    _check(final, paper_pipeline)


def test_openai_endpoint_json_and_stream_with_bracketed_evidence(paper_pipeline, serve_pipeline):
    with serve_pipeline(paper_pipeline) as client:
        oai = openai.OpenAI(base_url=str(client.base_url) + "/v1", api_key="unused", max_retries=0, timeout=60)
        resp = oai.chat.completions.create(model="rag", messages=[{"role": "user", "content": QUESTION}])
        chunks = list(oai.chat.completions.create(model="rag", stream=True,
                                                  messages=[{"role": "user", "content": QUESTION}]))
    for content, extra in ((resp.choices[0].message.content, resp.model_extra),
                           ("".join(c.choices[0].delta.content or "" for c in chunks), chunks[-1].model_extra)):
        answer, sources = content.split("\n\nSources:\n")
        body = {"answer": answer, "abstained": extra["rag"]["abstained"], "citations": extra["citations"],
                "segments": extra["rag"]["segments"]}
        _check(body, paper_pipeline)
        # The whole content, sources list included, has no bracketed number that is not a marker.
        check_answer_contract({k: v for k, v in body.items() if k != "segments"} | {"answer": content},
                              paper_pipeline)
        assert "ACE2 (7) review" in sources  # titles neutralised too (sources list titles and places)


def test_llm_generator_on_every_route_with_bracketed_passages(tmp_path, embedder, llm, serve_pipeline):
    from rag.config import Settings
    from rag.pipeline import Pipeline
    from support import SEEDS
    from test_chat import stream_ask

    pipeline = Pipeline(Settings(data_dir=tmp_path / "d", seed_dir=SEEDS, openai_base_url=llm.base_url,
                                 openai_model="stand-in"), embedder=embedder)
    pipeline.ingest_documents([make_document(PAPER, source="papers/ace2.txt", title="ACE2 review")])
    llm.reply = "Endothelial cells [2] express ACE2 [S1], binding the spike [29, 30] [S1]. Not [S9]."
    with serve_pipeline(pipeline) as client:
        body = client.post("/ask", json={"question": QUESTION, "generator": "openai"}).json()
        _, events = stream_ask(client, {"question": QUESTION, "generator": "openai"})
        prompt = llm.requests[0]["body"]["messages"][-1]["content"]
    expected = "Endothelial cells (2) express ACE2 [1], binding the spike (29, 30) [1]. Not."
    assert body["answer"] == expected
    _check(body, pipeline)
    final = next(d for n, d in events if n == "citations")
    assert final["answer"] == expected == "".join(d["text"] for n, d in events if n == "delta").strip()
    _check(final, pipeline)
    assert "[S1]" in prompt and "[2]" in prompt  # passages shown as they are, labelled apart
    assert json.loads(json.dumps(final["segments"]))[0]["text"] == "Endothelial cells [2] express ACE2"
