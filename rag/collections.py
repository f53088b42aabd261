"""Collections: named corpora served by one process, each with its own index, build settings and keys.

The default collection is the data directory itself (what `RAG_DATA_DIR` always held), so existing
indexes and URLs keep working. Every other collection lives in `RAG_DATA_DIR/collections/<name>/`:

    collection.json   name, created_at, the build settings it overrides (embedding model, chunking),
                      and the SHA-256 of each of its API keys (keys themselves are shown once, at creation)
    index/            its index store (segments, manifests, journal), exactly like the default collection's

Pipelines are opened on first use and share one embedder per model. A key of one collection grants
nothing on another; the server's own keys (`RAG_API_KEYS`) administer every collection.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import shutil
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import components
from .config import Settings
from .durable import fsync_path
from .embedding import Embedder
from .errors import ConflictError, InvalidInputError, NotFoundError
from .pipeline import Pipeline

DEFAULT = "default"
NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
# Settings a collection may set for itself: they change how its index is built.
BUILD_SETTINGS = ("embed_model", "chunk_size", "chunk_overlap")


class CollectionNotFoundError(NotFoundError):
    code = "collection_not_found"


class CollectionExistsError(ConflictError):
    """409: a collection of that name exists already."""

    code = "collection_exists"


@dataclass(frozen=True)
class Collection:
    name: str
    created_at: str
    overrides: dict = field(default_factory=dict)  # of BUILD_SETTINGS
    key_hashes: tuple[str, ...] = ()

    def public(self) -> dict:
        """What the API shows: never the key hashes."""
        return {"name": self.name, "created_at": self.created_at, "settings": dict(self.overrides),
                "keys": len(self.key_hashes)}


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME.match(name):
        raise InvalidInputError(f"invalid collection name {str(name)[:70]!r}: 1-63 lower-case letters, digits, "
                                "'-' and '_', starting with a letter or digit")
    return name


class Collections:
    def __init__(self, settings: Settings, *, embedder: Embedder | None = None,
                 default: Pipeline | None = None):
        """`embedder` is shared by every collection that uses the settings' model; `default` is an
        already open pipeline for the default collection (its caller closes it)."""
        self.settings = settings
        self.root = settings.data_dir / "collections"
        self._lock = threading.RLock()
        self._pipelines: dict[str, Pipeline] = {}
        self._owned: set[str] = set()
        self._embedders: dict[str, Embedder] = {settings.embed_model: embedder} if embedder is not None else {}
        self._default = default
        if default is not None:  # its embedder is shared when a collection opens (not now: no model load here)
            self._pipelines[DEFAULT] = default

    # -- the registry ----------------------------------------------------------------------
    def _dir(self, name: str) -> Path:
        return self.root / check_name(name)

    def get(self, name: str) -> Collection:
        if name == DEFAULT:
            return Collection(DEFAULT, created_at="", overrides={})
        path = self._dir(name) / "collection.json"
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise CollectionNotFoundError(f"no collection named {name!r}") from None
        return Collection(name=raw["name"], created_at=raw["created_at"], overrides=raw.get("overrides", {}),
                          key_hashes=tuple(raw.get("key_hashes", ())))

    def names(self) -> list[str]:
        found = sorted(p.name for p in self.root.iterdir() if (p / "collection.json").is_file()
                       and NAME.match(p.name)) if self.root.is_dir() else []
        return [DEFAULT, *(n for n in found if n != DEFAULT)]

    def list(self) -> list[Collection]:
        return [self.get(n) for n in self.names()]

    def create(self, name: str, overrides: dict | None = None) -> tuple[Collection, str]:
        """A new, empty collection and its first API key (returned once; only its hash is stored)."""
        check_name(name)
        if name == DEFAULT:
            raise CollectionExistsError("the default collection always exists")
        overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
        unknown = set(overrides) - set(BUILD_SETTINGS)
        if unknown:
            raise InvalidInputError(f"unknown collection setting(s) {sorted(unknown)}; "
                                    f"a collection may set {', '.join(BUILD_SETTINGS)}")
        Settings(**{**self.settings.model_dump(), **overrides})  # validates values with the settings' rules
        key = "rag-" + secrets.token_urlsafe(24)
        collection = Collection(name=name, created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                overrides=overrides, key_hashes=(key_hash(key),))
        with self._lock:
            target = self._dir(name)
            if target.exists():
                raise CollectionExistsError(f"a collection named {name!r} exists already")
            tmp = self.root / f".tmp-{name}-{secrets.token_hex(4)}"
            tmp.mkdir(parents=True)
            record = {**asdict(collection), "key_hashes": list(collection.key_hashes)}
            (tmp / "collection.json").write_text(json.dumps(record, indent=2), encoding="utf-8")
            fsync_path(tmp / "collection.json")
            fsync_path(tmp)
            os.rename(tmp, target)  # atomic: a collection exists whole or not at all
            fsync_path(self.root)
        return collection, key

    def delete(self, name: str) -> None:
        """Remove a collection and its index. Requests already running keep their snapshot."""
        if name == DEFAULT:
            raise InvalidInputError("the default collection cannot be deleted")
        with self._lock:
            self.get(name)  # 404 when there is none
            pipeline = self._pipelines.pop(name, None)
            if pipeline is not None and name in self._owned:
                self._owned.discard(name)
                pipeline.close()
            gone = self.root / f".deleted-{name}-{secrets.token_hex(4)}"
            os.rename(self._dir(name), gone)  # atomic: no half-deleted collection is ever served
            fsync_path(self.root)
        shutil.rmtree(gone, ignore_errors=True)

    # -- keys ------------------------------------------------------------------------------
    def key_allows(self, name: str, presented: str | None) -> bool:
        """Whether `presented` is one of this collection's own keys (constant-time comparisons)."""
        if presented is None or name == DEFAULT:
            return False
        digest = key_hash(presented)
        ok = False
        for h in self.get(name).key_hashes:
            ok |= hmac.compare_digest(digest, h)
        return ok

    # -- serving ---------------------------------------------------------------------------
    def settings_for(self, name: str) -> Settings:
        if name == DEFAULT:
            return self.settings
        collection = self.get(name)
        return Settings(**{**self.settings.model_dump(), **collection.overrides,
                           "data_dir": self._dir(name)})

    def pipeline(self, name: str) -> Pipeline:
        """The collection's pipeline, opened (index loaded; an empty index built) on first use."""
        with self._lock:
            pipeline = self._pipelines.get(name)
            if pipeline is not None:
                return pipeline
            settings = self.settings_for(name)
            embedder = self._embedders.get(settings.embed_model)
            if embedder is None and self._default is not None and settings.embed_model == self.settings.embed_model:
                embedder = self._embedders[settings.embed_model] = self._default.embedder
            if embedder is None:  # one model in memory per embedding model, whatever the collections
                embedder = self._embedders[settings.embed_model] = components.make_embedder(settings)
            pipeline = Pipeline(settings, embedder=embedder)
            if name == DEFAULT:
                pipeline.load()
            else:
                pipeline.open_empty()
            self._pipelines[name] = pipeline
            self._owned.add(name)
            return pipeline

    def close(self) -> None:
        """Flush and close the pipelines this registry opened (a clean stop leaves an empty journal)."""
        with self._lock:
            for name in list(self._owned):
                pipeline = self._pipelines.pop(name)
                try:
                    pipeline.compact()
                finally:
                    pipeline.close()
            self._owned.clear()
