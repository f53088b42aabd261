"""Shared fixtures: the real embedding model (loaded once), the seed index (built once), real
uvicorn servers on loopback, and an OpenAI-compatible stand-in speaking the real wire format."""
from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path

import httpx
import pytest

from rag.config import Settings
from rag.embedding import SentenceTransformerEmbedder
from rag.pipeline import Pipeline
from server.app import create_app

from fakes import HashEmbedder
from support import SEEDS, LLMStandIn, running_server, wait_ready


# -- tiers ---------------------------------------------------------------------------------
def pytest_collection_modifyitems(items):
    """A test that loads the real model (every fixture built on `embedder` does) belongs to the
    integration tier; the fast tier is `-m "not integration"`. Modules that start server processes
    or Chromium mark themselves."""
    for item in items:
        if "embedder" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.integration)


# -- the fast tier: a stand-in embedder, no model ------------------------------------------------
@pytest.fixture
def fake_pipeline(tmp_path):
    """A factory of pipelines on a fresh data dir with the deterministic stand-in embedder."""
    made = []

    def make(data_dir: Path | None = None, **overrides) -> Pipeline:
        settings = Settings(data_dir=data_dir or tmp_path / "data", seed_dir=SEEDS, embed_model="hash-embedder",
                            **{"flush_seconds": 86400, **overrides})
        pipeline = Pipeline(settings, embedder=HashEmbedder())
        made.append(pipeline)
        return pipeline

    yield make
    for p in made:
        p.close()


# -- the model and the seed index: built once per session -------------------------------
@pytest.fixture(scope="session")
def embedder(tmp_path_factory) -> SentenceTransformerEmbedder:
    """The default embedder (ONNX backend; exported once per session into a tmp cache)."""
    return SentenceTransformerEmbedder(cache_dir=tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="session")
def seed_data_dir(tmp_path_factory, embedder) -> Path:
    data_dir = tmp_path_factory.mktemp("seed-data")
    Pipeline(Settings(data_dir=data_dir, seed_dir=SEEDS), embedder=embedder).load()
    return data_dir


@pytest.fixture(scope="session")
def seed_pipeline(seed_data_dir, embedder) -> Pipeline:
    """The seed index, loaded from disk. Read-only: tests that write use `tmp_pipeline`."""
    # No rate limit: the session's tests share one client address, so a shared bucket would make
    # them depend on how fast the machine is (rate limiting has tests of its own).
    pipeline = Pipeline(Settings(data_dir=seed_data_dir, seed_dir=SEEDS, rate_limit=0), embedder=embedder)
    pipeline.load(build_from_seeds=False)
    return pipeline


@pytest.fixture
def make_seed_pipeline(seed_data_dir, embedder):
    """A pipeline over the (read-only) seed index with other query-time settings."""

    def make(**overrides) -> Pipeline:
        pipeline = Pipeline(Settings(data_dir=seed_data_dir, seed_dir=SEEDS, **{"rate_limit": 0, **overrides}),
                            embedder=embedder)
        pipeline.load(build_from_seeds=False)
        return pipeline

    return make


@pytest.fixture
def tmp_pipeline(tmp_path, embedder):
    """A factory of pipelines over a fresh, empty data dir under tmp_path (for tests that write)."""

    def make(data_dir: Path | None = None, *, with_embedder=None, **overrides) -> Pipeline:
        # Flushes by count only (not by age), so that what the journal holds does not depend on timing.
        settings = Settings(data_dir=data_dir or tmp_path / "data", seed_dir=SEEDS,
                            **{"flush_seconds": 86400, **overrides})
        return Pipeline(settings, embedder=with_embedder or embedder)

    return make


@pytest.fixture(scope="session")
def seed_doc(seed_pipeline):
    (doc,) = seed_pipeline.index.live_documents()
    return doc


# -- the OpenAI-compatible stand-in ------------------------------------------------------
@pytest.fixture(scope="session")
def _llm_server():
    stand_in = LLMStandIn()
    with running_server(stand_in.app()) as base_url:
        stand_in.base_url = base_url + "/v1"
        yield stand_in


@pytest.fixture
def llm(_llm_server) -> LLMStandIn:
    """The stand-in, reset to answer normally; tests set `.mode` / `.reply` / `.delay`."""
    _llm_server.reset()
    yield _llm_server
    _llm_server.reset()


# -- the API over real HTTP --------------------------------------------------------------
@pytest.fixture(scope="session")
def api(seed_pipeline):
    """An httpx client for a real uvicorn server on loopback serving the seed pipeline."""
    app = create_app(seed_pipeline, load_in_background=False)
    with running_server(app) as base_url:
        with httpx.Client(base_url=base_url, timeout=60) as client:
            wait_ready(client)
            yield client


@pytest.fixture
def serve_pipeline():
    """Serve any pipeline over real HTTP for the duration of a test: `with serve_pipeline(p) as client:`."""
    from contextlib import contextmanager

    @contextmanager
    def serve(pipeline: Pipeline, *, ready: bool = True):
        app = create_app(pipeline, load_in_background=False)
        with running_server(app) as base_url:
            with httpx.Client(base_url=base_url, timeout=60) as client:
                if ready:
                    wait_ready(client)
                yield client

    return serve


# -- headless Chromium ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def browser():
    """Debian's headless Chromium, one per test module (Playwright drives it; nothing is downloaded)."""
    from playwright.sync_api import sync_playwright

    from browser_support import CHROMIUM, CHROMIUM_ARGS

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    """A fresh page on a 360 px wide screen; any uncaught script error in it fails the test."""
    context = browser.new_context(viewport={"width": 360, "height": 740})
    page = context.new_page()
    page.set_default_timeout(20_000)
    script_errors: list[str] = []
    page.on("pageerror", lambda exc: script_errors.append(str(exc)))
    yield page
    context.close()
    assert script_errors == []
