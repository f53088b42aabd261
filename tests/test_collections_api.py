"""Collections over real HTTP on loopback (stand-in embedder, no model): separate keys, results
and deletion; today's URLs are the default collection; the OpenAI model list shows collections."""
from __future__ import annotations

import httpx
import pytest

from server.app import create_app

from support import running_server

ADMIN = {"Authorization": "Bearer admin-key"}


def _bearer(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def server(fake_pipeline):
    pipeline = fake_pipeline(api_keys=["admin-key"], protect_reads=True, rate_limit=0)
    pipeline.load()
    with running_server(create_app(pipeline, load_in_background=False)) as url:
        with httpx.Client(base_url=url, timeout=30) as client:
            yield client


def test_two_collections_with_their_own_keys_never_leak(server):
    a = server.post("/collections", json={"name": "alpha"}, headers=ADMIN)
    b = server.post("/collections", json={"name": "beta", "settings": {"chunk_size": 400}}, headers=ADMIN)
    assert (a.status_code, b.status_code) == (201, 201)
    key_a, key_b = a.json()["api_key"], b.json()["api_key"]
    assert b.json()["settings"] == {"chunk_size": 400} and "key_hashes" not in b.json()
    doc = {"id": "d1", "text": "The harbour of Valdera was rebuilt in 1887."}
    assert server.post("/collections/alpha/documents", json=doc, headers=_bearer(key_a)).status_code == 201
    # A key of one collection can neither write nor read another; no key at all gets 401 too.
    assert server.post("/collections/beta/documents", json=doc, headers=_bearer(key_a)).status_code == 401
    assert server.post("/collections/beta/search", json={"query": "harbour"}, headers=_bearer(key_a)).status_code == 401
    assert server.post("/collections/alpha/search", json={"query": "harbour"}).status_code == 401
    assert server.post("/search", json={"query": "harbour"}, headers=_bearer(key_a)).status_code == 401
    found = server.post("/collections/alpha/search", json={"query": "harbour"}, headers=_bearer(key_a)).json()
    assert [p["document_id"] for p in found["passages"]] == ["d1"]
    empty = server.post("/collections/beta/search", json={"query": "harbour"}, headers=_bearer(key_b)).json()
    assert empty["passages"] == []
    default = server.post("/search", json={"query": "harbour"}, headers=ADMIN).json()
    assert "d1" not in [p["document_id"] for p in default["passages"]]
    answer = server.post("/collections/alpha/ask", json={"question": "When was the harbour of Valdera rebuilt?"},
                         headers=_bearer(key_a)).json()
    assert not answer["abstained"] and answer["citations"][0]["document_id"] == "d1"
    # The server's key administers every collection.
    assert server.get("/collections/beta/documents", headers=ADMIN).status_code == 200
    names = [c["name"] for c in server.get("/collections", headers=ADMIN).json()["collections"]]
    assert names == ["default", "alpha", "beta"]


def test_collections_are_models_for_chat_front_ends(server):
    key = server.post("/collections", json={"name": "alpha"}, headers=ADMIN).json()["api_key"]
    server.post("/collections/alpha/documents", json={"id": "d1", "text": "Cats sleep for most of the day and hunt at night."},
                headers=_bearer(key))
    assert [m["id"] for m in server.get("/v1/models", headers=ADMIN).json()["data"]] == ["rag", "rag/alpha"]
    assert [m["id"] for m in server.get("/v1/models", headers=_bearer(key)).json()["data"]] == ["rag/alpha"]
    body = {"model": "rag/alpha", "messages": [{"role": "user", "content": "Do cats sleep for most of the day?"}]}
    reply = server.post("/v1/chat/completions", json=body, headers=_bearer(key))
    assert reply.status_code == 200 and reply.json()["model"] == "rag/alpha"
    assert reply.json()["citations"][0]["document_id"] == "d1"
    assert server.post("/v1/chat/completions", json={**body, "model": "rag"}, headers=_bearer(key)).status_code == 401
    missing = server.post("/v1/chat/completions", json={**body, "model": "rag/nope"}, headers=ADMIN)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "model_not_found"


def test_creating_needs_the_server_key_and_deleting_removes_everything(server):
    assert server.post("/collections", json={"name": "alpha"}).status_code == 401
    key = server.post("/collections", json={"name": "alpha"}, headers=ADMIN).json()["api_key"]
    assert server.post("/collections", json={"name": "alpha"}, headers=ADMIN).status_code == 409
    assert server.post("/collections", json={"name": "Bad/Name"}, headers=ADMIN).status_code == 422
    assert server.delete("/collections/alpha", headers=_bearer(key)).status_code == 401  # its key cannot delete it
    assert server.delete("/collections/alpha", headers=ADMIN).status_code == 204
    assert server.post("/collections/alpha/search", json={"query": "x"}, headers=_bearer(key)).status_code == 404
    assert server.delete("/collections/alpha", headers=ADMIN).status_code == 404
    assert server.delete("/collections/default", headers=ADMIN).status_code == 422
