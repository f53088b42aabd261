"""The dense vector index: exact (flat) while the corpus is small, IVF beyond a measured size.

Flat inner-product search costs grow with the corpus (15.5 ms per query at 100k chunks and 168 ms
at a million here, so about 8 ms at the 50k threshold); an IVF index probes a few of its clusters
instead. IVF-Flat keeps the exact vectors, so its only error is a neighbour in a cluster it did not
probe; `rag bench-scale` measures
that as recall@10 against exact search. Stored IVF indexes are memory-mapped when loaded: the vectors
stay on disk and only the probed lists are read.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Callable, Literal

import numpy as np

VectorIndexKind = Literal["auto", "flat", "ivf"]

# Below this many allowed rows a filtered IVF search compares the allowed vectors exactly: probing
# clusters would mostly find rows the filter rejects.
EXACT_SUBSET_LIMIT = 20_000
# faiss warns below 39 training points per cluster; fewer clusters than this are not worth an IVF.
MIN_NLIST = 16
TRAIN_POINTS_PER_LIST = 64


@dataclass(frozen=True)
class VectorIndexPolicy:
    kind: VectorIndexKind = "auto"
    ivf_min_vectors: int = 50_000  # auto: IVF from this corpus size on (see the README's Scale section)
    nprobe: int = 0  # clusters probed per query; 0 = nprobe_for(nlist)


def nlist_for(n: int) -> int:
    """Clusters for n vectors: the power of two nearest sqrt(n) (1024 at a million), so a probe
    scans about sqrt(n) vectors; it stays fixed over a factor of 4 in size, so writes can reuse a
    trained quantizer."""
    return max(MIN_NLIST, 2 ** round(math.log2(max(math.sqrt(n), 1))))


def nprobe_for(nlist: int) -> int:
    """Clusters probed by default: 32. Recall depends on how many clusters are probed more than on
    which share of them: `rag bench-scale` measured recall@10 against exact search of 0.92 / 0.95 /
    0.97 / 0.98 with 8 / 16 / 32 / 64 of 256 clusters at 100k chunks, and 0.91 / 0.96 / 0.97 / 0.98
    with 8 / 16 / 32 / 64 of 1024 at a million (8.5 ms p50 with 32)."""
    return min(nlist, 32)


def uses_ivf(n: int, policy: VectorIndexPolicy) -> bool:
    if n < MIN_NLIST * TRAIN_POINTS_PER_LIST:
        return False  # too few vectors to train clusters on
    return policy.kind == "ivf" or (policy.kind == "auto" and n >= policy.ivf_min_vectors)


def build_vector_index(matrix: np.ndarray, policy: VectorIndexPolicy, previous: object | None = None):
    """An inner-product index over the rows of `matrix` (row i answers as id i). An IVF quantizer
    of `previous` with the same number of clusters is reused instead of training a new one."""
    n, dim = matrix.shape
    index = empty_vector_index(n, dim, policy, previous, lambda take, rng: matrix if take == n
                               else matrix[np.sort(rng.choice(n, take, replace=False))])
    if n:
        index.add(np.ascontiguousarray(matrix, dtype=np.float32))
    return finish_vector_index(index, policy)


def empty_vector_index(n: int, dim: int, policy: VectorIndexPolicy, previous: object | None,
                       sample: Callable[[int, np.random.Generator], np.ndarray]):
    """The index `n` vectors will be added to (in batches, by the caller): flat, or IVF trained on
    `sample(count, rng)` (or with `previous`'s quantizer when it has the same number of clusters)."""
    import faiss

    if not uses_ivf(n, policy):
        return faiss.IndexFlatIP(dim)
    nlist = nlist_for(n)
    old = as_ivf(previous) if previous is not None else None
    if old is not None and old.nlist == nlist and old.d == dim:
        quantizer = faiss.clone_index(old.quantizer)
    else:
        quantizer = faiss.IndexFlatIP(dim)
    index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
    if not index.is_trained:
        rng = np.random.default_rng(0)  # the same corpus always gets the same clusters
        index.train(np.ascontiguousarray(sample(min(n, TRAIN_POINTS_PER_LIST * nlist), rng), dtype=np.float32))
    return index


def finish_vector_index(index: object, policy: VectorIndexPolicy):
    ivf = as_ivf(index)
    if ivf is not None:
        index.make_direct_map()  # reconstruct(row): fusion scores BM25-only candidates by their cosine
        index.nprobe = policy.nprobe or nprobe_for(ivf.nlist)
    return index


def as_ivf(index: object):
    """`index` as an IndexIVF, or None when it is not one."""
    import faiss

    return faiss.try_extract_index_ivf(index)


def configure(index: object, policy: VectorIndexPolicy) -> None:
    """Apply query-time settings to a loaded index."""
    ivf = as_ivf(index)
    if ivf is not None and policy.nprobe:
        ivf.nprobe = min(policy.nprobe, ivf.nlist)


def read_vector_index(path: str, *, mmap: bool = True):
    """Load a stored index; IVF lists are memory-mapped (flat indexes are read into memory), or with
    `mmap=False` read into memory too."""
    import faiss

    return faiss.read_index(path, faiss.IO_FLAG_MMAP if mmap else 0)


def write_vector_index(index: object, path: str, source: str | None = None) -> None:
    """Store an index; `source` is the file a loaded one was read from. That file is copied: FAISS
    would write memory-mapped IVF lists as a reference to an external file, not as the lists (and a
    loaded index is never modified)."""
    import shutil

    import faiss

    if source is not None and os.path.exists(source):
        shutil.copyfile(source, path)
        return
    ivf = as_ivf(index)
    if source is not None and ivf is not None:  # its file is gone (the mapping still reads): rebuild in memory
        copy = faiss.IndexIVFFlat(faiss.clone_index(ivf.quantizer), ivf.d, ivf.nlist, ivf.metric_type)
        if ivf.ntotal:
            copy.add(ivf.reconstruct_n(0, ivf.ntotal))
        copy.make_direct_map()
        copy.nprobe = ivf.nprobe
        index = copy
    # Through a Python file: FAISS's own FILE* writer does not check the final flush, so a full disk
    # (or `ulimit -f`) left a cut-short file that the snapshot then recorded as good. Python's file
    # raises on every failed or short write, and the error reaches the caller as OSError.
    with open(path, "wb") as f:
        faiss.write_index(index, faiss.PyCallbackIOWriter(f.write))


def describe(index: object) -> dict:
    ivf = as_ivf(index)
    if ivf is None:
        return {"type": "flat", "vectors": int(index.ntotal)}
    return {"type": "ivf-flat", "vectors": int(index.ntotal), "nlist": int(ivf.nlist), "nprobe": int(ivf.nprobe)}


def search(index: object, query: np.ndarray, k: int, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Top-k (scores, rows) for one query vector; `allowed` is a boolean mask over rows."""
    import faiss

    q = np.ascontiguousarray(query, dtype=np.float32).reshape(1, -1)
    if allowed is None:
        scores, rows = index.search(q, k)
        return scores[0], rows[0]
    ivf = as_ivf(index)
    allowed_rows = np.flatnonzero(allowed)
    if ivf is not None and len(allowed_rows) <= EXACT_SUBSET_LIMIT:
        return exact_subset(index, q[0], allowed_rows, k)
    bitmap = np.packbits(allowed, bitorder="little")
    selector = faiss.IDSelectorBitmap(len(allowed), faiss.swig_ptr(bitmap))
    if ivf is None:
        params = faiss.SearchParameters(sel=selector)
    else:
        # Probe more clusters the fewer rows pass, so about as many allowed rows are scanned.
        boost = math.ceil(index.ntotal / max(len(allowed_rows), 1))
        params = faiss.SearchParametersIVF(sel=selector, nprobe=min(ivf.nlist, ivf.nprobe * boost))
    scores, rows = index.search(q, k, params=params)
    del bitmap  # the selector points into it until the search returns
    return scores[0], rows[0]


def exact_subset(index: object, q: np.ndarray, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k among `rows` by reconstructing their vectors."""
    if len(rows) == 0:
        return np.zeros(0, np.float32), np.zeros(0, np.int64)
    scores = index.reconstruct_batch(rows.astype(np.int64)) @ q
    top = np.argsort(-scores, kind="stable")[:k]
    return scores[top].astype(np.float32), rows[top]
