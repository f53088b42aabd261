"""Property-based fuzzing of the API's own OpenAPI schema with schemathesis, against a real server on
loopback: valid and invalid requests for every operation (writes included, with an API key) must
never get a 5xx, and every response must match what the schema promises."""
from __future__ import annotations

import shutil

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (content_type_conformance, response_schema_conformance,
                                                status_code_conformance)

KEY = "fuzz-key-5d1c0e7a"


def app_schema() -> dict:
    """The app's OpenAPI document (building the app loads no model or index)."""
    from rag.config import Settings
    from rag.pipeline import Pipeline
    from server.app import create_app

    return create_app(Pipeline(Settings(api_keys=[KEY])), load_in_background=True).openapi()


OPENAPI = app_schema()
schema = schemathesis.openapi.from_dict(OPENAPI)


@pytest.fixture(scope="module")
def base_url(seed_data_dir, tmp_path_factory, embedder):
    """A real server on loopback over a copy of the seed index, with an API key so writes are fuzzed too."""
    import httpx

    from rag.config import Settings
    from rag.pipeline import Pipeline
    from server.app import create_app
    from support import SEEDS, running_server, wait_ready

    data_dir = tmp_path_factory.mktemp("fuzz") / "data"
    shutil.copytree(seed_data_dir, data_dir)
    pipeline = Pipeline(Settings(data_dir=data_dir, seed_dir=SEEDS, api_keys=[KEY], rate_limit=0), embedder=embedder)
    pipeline.load(build_from_seeds=False)
    with running_server(create_app(pipeline, load_in_background=False)) as url:
        with httpx.Client(base_url=url) as client:
            wait_ready(client)
            assert client.get("/openapi.json").json() == OPENAPI, "the served schema is the one fuzzed"
        yield url


FUZZ = settings(max_examples=25, derandomize=True, database=None, deadline=None,
                suppress_health_check=list(HealthCheck))
AUTH = {"Authorization": f"Bearer {KEY}"}


@schema.parametrize()
@FUZZ
def test_no_request_gets_a_server_error(case, base_url):
    """Valid and invalid requests alike: a 4xx for what is wrong, never a 5xx."""
    case.call_and_validate(base_url=base_url, headers=AUTH, checks=[not_a_server_error], timeout=60)


@schema.parametrize()
@FUZZ
def test_responses_match_the_schema(case, base_url):
    """Every status code, content type and body the server answers with is documented in the schema.
    (Streaming answers are `text/event-stream`, declared without a body schema, so only their type is checked.)"""
    case.call_and_validate(base_url=base_url, headers=AUTH, timeout=60,
                           checks=[status_code_conformance, content_type_conformance, response_schema_conformance])


@pytest.mark.parametrize("path", ["/ask", "/search", "/documents", "/v1/chat/completions"])
def test_bodies_that_are_not_utf8_are_invalid_json(base_url, path):
    """Found by fuzzing: bytes that are not UTF-8 are malformed JSON like any other (422, not 400)."""
    import httpx

    for body in (b"\x80abc", b'{"question": "caf\xe9"}'):
        r = httpx.post(base_url + path, content=body, headers={**AUTH, "content-type": "application/json"})
        assert r.status_code == 422, (path, body, r.status_code, r.text)
