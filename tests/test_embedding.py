"""Embedding backends and query micro-batching, with the real model."""
from __future__ import annotations

import threading

import numpy as np
import pytest

from rag.embedding import SentenceTransformerEmbedder
from rag.errors import IndexMismatchError
from rag.manifest import load_index

QUESTIONS = [f"What did speaker {i} say about the peace plan?" for i in range(40)]


def test_concurrent_queries_get_the_same_vectors_as_one_at_a_time(embedder):
    expected = embedder.encode(QUESTIONS)
    got: dict[str, np.ndarray] = {}

    def ask(part: list[str]) -> None:
        for q in part:
            got[q] = embedder.encode_query(q)

    threads = [threading.Thread(target=ask, args=(QUESTIONS[i::8],)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == len(QUESTIONS)
    for q, vector in zip(QUESTIONS, expected):
        assert np.allclose(got[q], vector, atol=1e-5)
        assert abs(float(np.linalg.norm(got[q])) - 1.0) < 1e-4


def test_int8_backend_is_close_to_fp32_and_never_mixed_with_it(tmp_path_factory, embedder, seed_data_dir):
    int8 = SentenceTransformerEmbedder(backend="onnx-int8", cache_dir=tmp_path_factory.mktemp("int8-models"))
    assert int8.precision == "int8" and embedder.precision == "fp32"
    cosines = [float(int8.encode_query(q) @ embedder.encode_query(q)) for q in QUESTIONS[:5]]
    assert min(cosines) > 0.98 and max(cosines) < 0.99999, cosines
    fp32_index = load_index(seed_data_dir / "index")
    from dataclasses import replace

    with pytest.raises(IndexMismatchError, match="embed_precision"):
        load_index(seed_data_dir / "index", replace(fp32_index.config, embed_precision="int8"))


def test_unknown_backend_is_refused_with_its_name(tmp_path):
    with pytest.raises(ValueError, match="got 'tensorrt'"):
        SentenceTransformerEmbedder(backend="tensorrt", cache_dir=tmp_path)
