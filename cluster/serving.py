"""Serving on Ray: each shard a Ray Serve application (replicas for read load) pinned to the node
holding its data, and the coordinator's handles to them.

A shard's replicas run on the node its ingest built it on (its data directory is that node's disk);
they share the directory through the index store's lock and refresh, as processes on one machine
do. When that node is gone the shard's calls time out and the coordinator answers 503 (or a flagged
partial answer); Serve starts the replicas again when the node returns, and serving recovers.
"""
from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from rag.config import Settings

from .coordinator import ClusterPipeline, ShardSet
from .ingestion import _portable, read_manifest

APP = "rag-shard-{}"
log = logging.getLogger("rag.cluster")


class ShardReplica:
    """The Serve deployment's body: one `cluster.shard.Shard` with its own model for writes."""

    def __init__(self, settings: dict, shard: int, shards: int):
        import ray

        from rag.embedding import SentenceTransformerEmbedder

        from .shard import Shard

        s = Settings(**settings)
        threads = max(1, int(ray.get_runtime_context().get_assigned_resources().get("CPU", 1.0)))
        embedder = SentenceTransformerEmbedder(s.embed_model, backend=s.embed_backend, batch_size=s.embed_batch_size,
                                               threads=threads, bulk_threads=threads, cache_dir=s.data_dir / "models")
        self.shard = Shard(s, shard, shards, embedder=embedder)

    def call(self, method: str, *args: Any) -> Any:
        return getattr(self.shard, method)(*args)

    def check_health(self) -> None:
        self.shard.info()


class ServeClient:
    """A `ShardClient` over a Serve application's handle."""

    def __init__(self, app: str):
        from ray import serve

        self.app = app
        self.handle = serve.get_app_handle(app)

    def start(self, method: str, *args: Any):
        response = self.handle.call.remote(method, *args)

        def wait(timeout_s: float):
            try:
                if _in_event_loop():  # Serve refuses blocking waits there (an async route reading sizes)
                    return _WAITER.submit(response.result, timeout_s=timeout_s).result()
                return response.result(timeout_s=timeout_s)
            except TimeoutError:
                response.cancel()
                raise
        return wait


_WAITER = ThreadPoolExecutor(max_workers=4, thread_name_prefix="shard-wait")


def _in_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def connect(settings: Settings, address: str) -> None:
    import ray

    if not ray.is_initialized():
        ray.init(address=address, _node_ip_address=settings.ray_node_ip, log_to_driver=False, namespace="rag")


def deploy(settings: Settings) -> dict:
    """Start (or update) every shard's Serve application; returns the shard plan."""
    from ray import serve

    plan = read_manifest(settings.data_dir)
    if plan is None:
        raise ValueError(f"no cluster index at {settings.data_dir}: run `rag ingest --cluster ADDRESS --shards N "
                         "PATH...` first")
    serve.start(proxy_location="Disabled")  # no Serve HTTP proxies: the app's own server is the front door
    deployment = serve.deployment(ShardReplica, health_check_period_s=2, health_check_timeout_s=30,
                                  max_ongoing_requests=32)
    targets = []
    for shard, node in enumerate(plan["nodes"]):
        app = deployment.options(name=f"shard-{shard}", num_replicas=settings.cluster_replicas,
                                 ray_actor_options={"num_cpus": settings.cluster_shard_cpus,
                                                    "resources": {f"node:{node}": 0.001}})
        targets.append(serve.RunTarget(app.bind(_portable(settings), shard, plan["shards"]), name=APP.format(shard),
                                       route_prefix=None))
    # Not waiting here: a shard whose node is down must not keep the others (and /readyz) from starting.
    serve.run_many(targets, wait_for_applications_running=False)
    return plan


def pipeline(settings: Settings, plan: dict) -> ClusterPipeline:
    clients = [ServeClient(APP.format(i)) for i in range(plan["shards"])]
    return ClusterPipeline(settings, ShardSet(clients, timeout_s=settings.cluster_timeout_s,
                                              allow_partial=settings.cluster_allow_partial))


def replicas(plan: dict) -> dict[int, dict]:
    """Each shard's node and its replicas by state (from the Serve controller)."""
    from ray import serve

    status = serve.status().applications
    out = {}
    for shard, node in enumerate(plan["nodes"]):
        app = status.get(APP.format(shard))
        states: dict[str, int] = {}
        if app is not None:
            for d in app.deployments.values():
                states.update({str(getattr(k, "value", k)): int(v) for k, v in d.replica_states.items()})
        out[shard] = {"node": node, "status": str(getattr(app.status, "value", app.status)) if app else "MISSING",
                      "replicas": states}
    return out
