"""Compute on demand: your own Spark (and Dask) clusters.

In a notebook (or anywhere, after ``lakehub.connect(url, token)``)::

    import lakehub.compute
    spark = lakehub.compute.spark(workers=2)         # a SparkSession on your own cluster
    spark.read.parquet("s3a://<you>-home/data/")      # the lake, with your keys

Nothing heavy is imported until a function is called.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lakehub.client import Client


def spark(workers: int = 2, cores: float = 1, memory: str | int = "2g", name: str | None = None,
          idle_timeout: float | None = None, client: Client | None = None,
          app_name: str | None = None, **conf: Any) -> Any:  # fmt: skip
    """A ``pyspark.sql.SparkSession`` on a Spark cluster of your own, with the lake configured
    for ``s3a://`` and ``s3://`` paths.

    Reuses your running cluster named ``name``, else one of this shape, else starts one
    (``cores`` and ``memory`` per worker). In a notebook server started with the ``spark``
    environment, its own cluster is used. Extra keyword arguments are Spark settings:
    ``spark(**{"spark.sql.shuffle.partitions": "8"})``."""
    from lakehub.compute.spark_session import session

    return session(workers, cores, memory, name, idle_timeout, client, app_name, conf)
