"""Compute on demand: your own Dask and Spark clusters.

In a notebook (or anywhere, after ``lakehub.connect(url, token)``)::

    import lakehub.compute
    client = lakehub.compute.dask(workers=4)       # a connected distributed.Client
    spark = lakehub.compute.spark(workers=2)        # a SparkSession on your own cluster
    spark.read.parquet("s3a://<you>-home/data/")     # the lake, with your keys
    lakehub.compute.clusters()                       # your clusters, with dashboard links
    lakehub.compute.stop("dask", name)

Clusters run as you and reach the lake with your credentials; their caps come from your quotas
(see docs/howto/compute.md). Nothing heavy is imported until a function is called.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

if TYPE_CHECKING:
    from lakehub.client import Client


def _client(client: Client | None) -> Client:
    from lakehub.client import default

    return default(client)


def clusters(client: Client | None = None) -> list[dict[str, Any]]:
    """Your clusters of every kind: kind, name, status, workers, dashboard_url..."""
    data: list[dict[str, Any]] = _client(client).request("GET", "/api/compute")
    return data


def stop(kind: str, name: str, client: Client | None = None) -> None:
    _client(client).request("DELETE", f"/api/compute/{quote(kind)}/{quote(name, safe='')}")


@contextmanager
def _no_collection() -> Iterator[None]:
    """No garbage collection while a cluster object starts. Its ``LoopRunner.start()``
    (distributed's) holds a class-wide lock while it waits, 10 s at most, for the new IO loop
    thread; a collection in that thread or in this one that finalizes a dropped cluster object
    waits for the same lock (its ``close()`` stops its loop runner): the start fails with
    ``assert loop is not None``, or hangs."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def dask(
    workers: int = 2,
    cores: int = 1,
    memory: str | int = "2 GiB",
    idle_timeout: float | None = None,
    client: Client | None = None,
    wait: float = 60,
) -> Any:
    """Start a Dask cluster of your own and return a ``distributed.Client`` connected to it.

    ``cores`` and ``memory`` are per worker. The cluster stops when idle for your hub's idle
    timeout (or ``idle_timeout`` seconds, if shorter), or with ``client.cluster.shutdown()``.
    In a run of a job with a cluster of its own, this connects to that cluster (its shape is
    the job's; LakeHub stops it after the run)."""
    from dask_gateway import GatewayCluster
    from dask_gateway.auth import JupyterHubAuth

    hub = _client(client)
    kind, _, job_cluster = os.environ.get("LAKEHUB_JOB_CLUSTER", "").partition("/")
    if kind == "dask" and job_cluster:
        mine = [c for c in clusters(hub) if c["kind"] == "dask" and c["name"] == job_cluster]
        if not mine:
            from lakehub.client import LakeHubError

            raise LakeHubError(404, f"this run's cluster {job_cluster} is gone")
        started = mine[0]
    else:
        started = hub.request(
            "POST",
            "/api/compute/dask",
            json={
                "workers": workers,
                "cores": cores,
                "memory": memory,
                "idle_timeout": idle_timeout,
            },
        )
    # in a notebook the gateway is reached directly; elsewhere through the hub's front door
    front = hub.url.removesuffix("/services/lakehub") + "/services/dask-gateway"
    address = os.environ.get("DASK_GATEWAY__ADDRESS") or front
    proxy, _, name = started["address"].rpartition("/")
    # the cluster object owns its connection to the gateway (closed with the cluster object)
    with _no_collection():
        cluster = GatewayCluster.from_name(
            name, address=address, proxy_address=proxy, auth=JupyterHubAuth(api_token=hub.token)
        )
    dask_client = cluster.get_client(set_as_default=True)
    if workers:
        dask_client.wait_for_workers(1, timeout=wait)
    return dask_client


def submit(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Run ``fn(*args, **kwargs)`` in the background; the hub records its state, so the notebook
    may close (see :mod:`lakehub.compute.tasks`: ``tasks.get(id).result()``)."""
    from lakehub.compute.tasks import submit as _submit

    return _submit(fn, *args, **kwargs)


def spark(
    workers: int | None = None,
    cores: float | None = None,
    memory: str | int | None = None,
    name: str | None = None,
    idle_timeout: float | None = None,
    client: Client | None = None,
    app_name: str | None = None,
    connect: bool = False,
    **conf: Any,
) -> Any:
    """A ``pyspark.sql.SparkSession`` on a Spark cluster of your own, with the lake configured
    for ``s3a://`` and ``s3://`` paths.

    ``connect=True``: a Spark Connect session (no JVM here: the cluster's Spark Connect server
    holds the driver, with your keys; only your cluster's token opens it).

    Reuses your running cluster named ``name``, else one of this shape, else starts one
    (``cores`` and ``memory`` per worker; 2 workers of 1 core and 2g unless given). In a
    notebook server started with the ``spark`` environment, ``spark()`` uses the server's own
    cluster; given a shape (``spark(workers=2)``), it uses or starts a cluster of that shape.
    Extra keyword arguments are Spark settings: ``spark(**{"spark.sql.shuffle.partitions":
    "8"})``. See docs/howto/spark.md."""
    from lakehub.compute.spark_session import session

    if connect:
        from lakehub.compute.spark_session import remote_session

        return remote_session(workers, cores, memory, name, idle_timeout, client, conf)
    return session(workers, cores, memory, name, idle_timeout, client, app_name, conf)
