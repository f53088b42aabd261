"""Distributed ingestion: read and chunk on the driver, embed with Ray Data across the cluster's
nodes, and build each shard from the precomputed vectors on the node that will serve it.

The shard build is the library's own (`Pipeline.ingest_documents`, the same snapshot, journal and
vector reuse as `rag ingest`); only its embedder differs: `PrecomputedEmbedder` looks the texts up
in what the cluster embedded.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from rag.build import texts_to_embed
from rag.config import Settings
from rag.documents import Document, fetch_options_for, is_url, limits_for, load_paths
from rag.index import IndexConfig
from rag.ingest import file_origin

from .shard import shard_of, shard_settings

MANIFEST = "cluster.json"  # in the coordinator's data dir: how many shards, and each one's node


class PrecomputedEmbedder:
    """An `Embedder` over vectors computed elsewhere: `encode` looks each text up."""

    def __init__(self, name: str, precision: str, texts: Sequence[str], vectors: np.ndarray):
        self.name, self._precision = name, precision
        self._rows = {t: i for i, t in enumerate(texts)}
        self._vectors = np.asarray(vectors, dtype=np.float32)

    @property
    def dimension(self) -> int:
        return int(self._vectors.shape[1])

    @property
    def precision(self) -> str:
        return self._precision

    def encode(self, texts: Sequence[str], *, show_progress: bool = False) -> np.ndarray:
        try:
            rows = [self._rows[t] for t in texts]
        except KeyError as exc:
            raise ValueError(f"text was not embedded by the cluster: {str(exc)[:80]}") from None
        return self._vectors[rows] if rows else np.zeros((0, self.dimension), dtype=np.float32)

    def encode_query(self, text: str) -> np.ndarray:
        return self.encode([text])[0]


class _EmbedBatch:
    """A Ray Data actor: the model loaded once, with as many threads as CPUs Ray gave the actor."""

    def __init__(self, settings: dict):
        import ray

        from rag.embedding import SentenceTransformerEmbedder

        s = Settings(**settings)
        threads = max(1, int(ray.get_runtime_context().get_assigned_resources().get("CPU", 1.0)))
        self.embedder = SentenceTransformerEmbedder(s.embed_model, backend=s.embed_backend,
                                                    batch_size=s.embed_batch_size, threads=threads,
                                                    bulk_threads=threads, cache_dir=s.data_dir / "models")
        self.node = ray.util.get_node_ip_address()

    def __call__(self, batch: dict) -> dict:
        vectors = self.embedder.encode(list(batch["text"]))
        return {"i": batch["i"], "vector": vectors, "node": np.full(len(vectors), self.node)}


def cluster_cpus() -> float:
    import ray

    return float(ray.cluster_resources().get("CPU", 0.0))


def embed_texts(texts: Sequence[str], settings: Settings, *, actors: int | None = None
                ) -> tuple[np.ndarray, dict[str, int]]:
    """Embed `texts` across the cluster: (vectors in the order given, texts embedded per node)."""
    import ray

    if not texts:
        return np.zeros((0, 0), dtype=np.float32), {}
    actors = actors or max(1, int(cluster_cpus() // settings.cluster_embed_cpus))
    blocks = min(len(texts), max(4 * actors, len(texts) // 256))
    ds = ray.data.from_items([{"i": i, "text": t} for i, t in enumerate(texts)], override_num_blocks=blocks)
    out = ds.map_batches(_EmbedBatch, fn_constructor_kwargs={"settings": _portable(settings)},
                         batch_size=min(256, max(1, len(texts) // (2 * actors))), concurrency=actors,
                         num_cpus=settings.cluster_embed_cpus, batch_format="numpy")
    order, vectors, nodes = [], [], []
    for batch in out.iter_batches(batch_size=None, batch_format="numpy"):
        order.append(batch["i"]), vectors.append(batch["vector"]), nodes.append(batch["node"])
    matrix = np.empty((len(texts), vectors[0].shape[1]), dtype=np.float32)
    matrix[np.concatenate(order)] = np.concatenate(vectors)
    names, counts = np.unique(np.concatenate(nodes), return_counts=True)
    return matrix, {str(n): int(c) for n, c in zip(names, counts)}


def _portable(settings: Settings) -> dict:
    """Settings as other processes rebuild them (the data dir absolute: workers run elsewhere)."""
    return {**settings.model_dump(mode="json"), "data_dir": str(Path(settings.data_dir).resolve())}


def read_manifest(data_dir: Path) -> dict | None:
    try:
        return json.loads((Path(data_dir) / MANIFEST).read_text())
    except FileNotFoundError:
        return None


def plan_nodes(settings: Settings, shards: int) -> dict:
    """Each shard's node: kept from an earlier ingest, else spread over the live nodes in order."""
    import ray

    manifest = read_manifest(settings.data_dir)
    if manifest is not None:
        if manifest["shards"] != shards:
            raise ValueError(f"{settings.data_dir} holds {manifest['shards']} shards; ingest with --shards "
                             f"{manifest['shards']} (resharding is not supported: ingest into a new data dir)")
        return manifest
    nodes = sorted(n["NodeManagerAddress"] for n in ray.nodes() if n["Alive"])
    return {"shards": shards, "nodes": [nodes[i % len(nodes)] for i in range(shards)]}


@dataclass
class _Gone:
    """Picklable `remove_if`: a stored file-backed document under the named directories whose file
    was not found this time (as `rag.ingest.Ingestor.ingest` decides)."""

    roots: list[str]
    present: set[str]

    def __call__(self, doc: Document) -> bool:
        origin = file_origin(doc)
        return (origin is not None and str(origin) not in self.present
                and any(origin == Path(r) or Path(r) in origin.parents for r in self.roots))


def _build_shard(settings: dict, shard: int, documents: list[Document], texts: list[str], vectors: np.ndarray,
                 precision: str, gone: _Gone) -> dict:
    from rag.pipeline import Pipeline

    s = shard_settings(Settings(**settings), shard)
    embedder = PrecomputedEmbedder(s.embed_model, precision, texts, vectors)
    with Pipeline(s, embedder=embedder) as pipeline:
        report = pipeline.ingest_documents(documents, remove_if=gone, calibrate=False)
    return {**asdict(report), "skipped": [], "shard": shard, "data_dir": str(s.data_dir)}


@dataclass
class ClusterIngestReport:
    shards: list[dict] = field(default_factory=list)
    skipped: list = field(default_factory=list)
    texts: int = 0
    embed_seconds: float = 0.0
    build_seconds: float = 0.0
    embedded_by_node: dict[str, int] = field(default_factory=dict)

    def total(self, key: str) -> int:
        return sum(len(r[key]) if isinstance(r[key], list) else r[key] for r in self.shards)


def ingest(settings: Settings, paths: Sequence[str | Path], shards: int) -> ClusterIngestReport:
    """Bring the shards in line with `paths` (connected to Ray already)."""
    items = [p if is_url(p) else Path(p) for p in paths]
    loaded = load_paths(items, limits=limits_for(settings), fetch_options=fetch_options_for(settings))
    return ingest_documents(settings, loaded.documents, shards, skipped=loaded.skipped,
                            gone=_Gone([str(p.resolve()) for p in items if isinstance(p, Path) and p.is_dir()],
                                       {str(file_origin(d)) for d in loaded.documents}))


def ingest_documents(settings: Settings, documents: Sequence[Document], shards: int, *, skipped=(),
                     gone: _Gone | None = None) -> ClusterIngestReport:
    import ray

    plan = plan_nodes(settings, shards)
    config = IndexConfig(settings.embed_model, 0, "fp32", settings.chunk_size, settings.chunk_overlap,
                         settings.index_titles)  # only chunking is read
    chunks, sentences = texts_to_embed(documents, config)
    unique = list(dict.fromkeys(chunks + sentences))
    report = ClusterIngestReport(skipped=list(skipped), texts=len(unique))
    t0 = time.perf_counter()
    vectors, report.embedded_by_node = embed_texts(unique, settings)
    report.embed_seconds = time.perf_counter() - t0
    row = {t: i for i, t in enumerate(unique)}
    precision = "int8" if settings.embed_backend == "onnx-int8" else "fp32"
    build = ray.remote(_build_shard)
    pending = []
    for shard in range(shards):
        docs = [d for d in documents if shard_of(d.id, shards) == shard]
        texts = list(dict.fromkeys(t for part in texts_to_embed(docs, config) for t in part))
        part = vectors[[row[t] for t in texts]] if texts else np.zeros((0, max(vectors.shape[1], 1)), np.float32)
        options = {"num_cpus": settings.cluster_shard_cpus, "resources": {f"node:{plan['nodes'][shard]}": 0.001}}
        pending.append(build.options(**options).remote(_portable(settings), shard, docs, texts, part, precision,
                                                       gone or _Gone([], set())))
    t1 = time.perf_counter()
    report.shards = ray.get(pending)
    report.build_seconds = time.perf_counter() - t1
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    (Path(settings.data_dir) / MANIFEST).write_text(json.dumps(plan))
    return report
