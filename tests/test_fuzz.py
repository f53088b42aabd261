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
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


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


@schema.parametrize()
@settings(max_examples=25, derandomize=True, database=None, deadline=None,
          suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_schema(case, base_url):
    case.call_and_validate(base_url=base_url, headers={"Authorization": f"Bearer {KEY}"}, checks=CHECKS, timeout=60)
