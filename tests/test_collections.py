"""Collections in the library (fast tier): isolation of indexes and keys, build settings per
collection, atomic create and delete, the default collection being today's data directory."""
from __future__ import annotations

import pytest

from rag.collections import DEFAULT, CollectionExistsError, CollectionNotFoundError, Collections
from rag.config import Settings
from rag.documents import make_document
from rag.errors import InvalidInputError

from fakes import HashEmbedder
from support import SEEDS


@pytest.fixture
def collections(tmp_path):
    settings = Settings(data_dir=tmp_path / "data", seed_dir=SEEDS, embed_model="hash-embedder")
    c = Collections(settings, embedder=HashEmbedder())
    yield c
    c.close()


def test_collections_are_isolated_and_keys_are_their_own(collections):
    a, key_a = collections.create("alpha")
    b, key_b = collections.create("beta", {"chunk_size": 400})
    collections.pipeline("alpha").put_documents([make_document("Alpha talks about harbours.", source="x", id="x")])
    collections.pipeline("beta").put_documents([make_document("Beta talks about cats.", source="y", id="y")])
    assert [p.document_id for p in collections.pipeline("alpha").search("harbours cats", 5)] == ["x"]
    assert [p.document_id for p in collections.pipeline("beta").search("harbours cats", 5)] == ["y"]
    assert collections.pipeline("beta").index.config.chunk_size == 400
    assert collections.key_allows("alpha", key_a) and not collections.key_allows("alpha", key_b)
    assert not collections.key_allows("beta", key_a) and not collections.key_allows(DEFAULT, key_a)
    assert "key_hashes" not in a.public() and a.public()["keys"] == 1
    assert collections.names() == [DEFAULT, "alpha", "beta"]


def test_create_refuses_bad_names_settings_and_duplicates(collections):
    for bad in ("", "Upper", "../etc", "a/b", "x" * 64, ".hidden"):
        with pytest.raises(InvalidInputError):
            collections.create(bad)
    with pytest.raises(InvalidInputError, match="unknown collection setting"):
        collections.create("gamma", {"api_keys": ["x"]})
    with pytest.raises(ValueError):
        collections.create("gamma", {"chunk_size": 5})
    collections.create("gamma")
    with pytest.raises(CollectionExistsError):
        collections.create("gamma")
    with pytest.raises(CollectionExistsError):
        collections.create(DEFAULT)


def test_delete_removes_the_index_and_the_default_stays(collections):
    collections.create("alpha")
    collections.pipeline("alpha").put_documents([make_document("Alpha text.", source="x", id="x")])
    path = collections.root / "alpha"
    assert path.is_dir()
    collections.delete("alpha")
    assert not path.exists() and collections.names() == [DEFAULT]
    with pytest.raises(CollectionNotFoundError):
        collections.pipeline("alpha")
    with pytest.raises(InvalidInputError):
        collections.delete(DEFAULT)


def test_a_new_process_sees_the_collections_on_disk(collections, tmp_path):
    _, key = collections.create("alpha")
    collections.pipeline("alpha").put_documents([make_document("Alpha text.", source="x", id="x")])
    again = Collections(collections.settings, embedder=HashEmbedder())
    try:
        assert again.names() == [DEFAULT, "alpha"] and again.key_allows("alpha", key)
        assert [d.id for d in again.pipeline("alpha").index.live_documents()] == ["x"]
    finally:
        again.close()


def test_making_the_registry_loads_no_model(tmp_path):
    """The app makes a registry at creation: that must not load the default pipeline's model."""
    from rag.pipeline import Pipeline

    default = Pipeline(Settings(data_dir=tmp_path / "data", seed_dir=SEEDS))
    Collections(default.settings, default=default)
    assert default._embedder is None
