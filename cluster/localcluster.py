"""A multi-node Ray cluster on this machine, for tests and the scale benchmark.

Nodes take loopback addresses 127.0.0.2, 127.0.0.3, ... (Ray rewrites 127.0.0.1 to the machine's
external address), so all cluster traffic stays on loopback. Workers are not niced (Ray's default of
15 loses every contest for the CPU on a busy machine), Ray's files go to a temp dir of their own, and
the cluster is stopped with `Cluster.shutdown()`: only the processes it started, never `ray stop`.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

ENV = {"RAY_worker_niceness": "0", "RAY_SERVE_PROXY_PREFER_LOCAL_NODE_ROUTING": "0", "RAY_USAGE_STATS_ENABLED": "0"}
STORE = 100 * 2**20  # object store per node (Ray's minimum is 75 MiB)


def node_ip(i: int) -> str:
    return f"127.0.0.{i + 2}"


@contextmanager
def local_cluster(nodes: int = 2, cpus: int = 1) -> Iterator:
    """A head and `nodes - 1` workers with `cpus` CPUs each; this process connected as the driver.
    Yields the `ray.cluster_utils.Cluster` (its `workers` list holds the worker nodes)."""
    import ray
    from ray.cluster_utils import Cluster

    tmp = Path(tempfile.mkdtemp(prefix="rt", dir="/tmp"))  # short: Ray's socket paths must fit 107 bytes
    (tmp / "ray").mkdir()
    saved = {k: os.environ.get(k) for k in [*ENV, "RAY_TMPDIR"]}
    os.environ.update(ENV, RAY_TMPDIR=str(tmp))
    cluster = Cluster(initialize_head=True, head_node_args={"node_ip_address": node_ip(0), "num_cpus": cpus,
                                                             "object_store_memory": STORE, "include_dashboard": False})
    try:
        cluster.workers = [cluster.add_node(node_ip_address=node_ip(i), num_cpus=cpus, object_store_memory=STORE)
                           for i in range(1, nodes)]
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, _node_ip_address=node_ip(0), log_to_driver=False, namespace="rag")
        yield cluster
    finally:
        try:
            from ray import serve

            if ray.is_initialized():
                serve.shutdown()
        finally:
            ray.shutdown()
            cluster.shutdown()
            for k, v in saved.items():
                os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
            shutil.rmtree(tmp, ignore_errors=True)


def add_worker(cluster, i: int, cpus: int = 1):
    """Start worker node `i` (again, at its address)."""
    return cluster.add_node(node_ip_address=node_ip(i), num_cpus=cpus, object_store_memory=STORE)
