"""LakeHub: a self-hosted data science platform.

The SDK::

    import lakehub
    client = lakehub.connect()                  # inside a notebook server
    client = lakehub.connect(url, token)        # anywhere else
    creds = client.lake.credentials()
    s3 = creds.boto3_client()
    sales = lakehub.datasets.get("sales")       # the dataset catalog: see lakehub.datasets
    f = lakehub.streams.open("audio")           # ingested streams: see lakehub.streams
    a = lakehub.arrays.open("big")              # out-of-core arrays: see lakehub.arrays
    cluster = lakehub.compute.dask(workers=2)   # your own clusters: see lakehub.compute
    lakehub.models.history("churn")              # alias history, lineage: see lakehub.models
"""

from __future__ import annotations

# not ``typing``: every interpreter of every environment imports this package at its start
# (``lakehub-profiles.pth``), and ``typing`` alone is a few milliseconds of it
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from lakehub.client import Client

__all__ = ["arrays", "compute", "connect", "datasets", "models", "streams"]
_SUBMODULES = ("datasets", "streams", "arrays", "compute", "models")
__version__ = "0.1.0"


def connect(url: str | None = None, token: str | None = None, **kwargs: Any) -> Client:
    from lakehub.client import connect as _connect

    return _connect(url, token, **kwargs)


def __getattr__(name: str) -> Any:
    """``lakehub.datasets`` and friends load on first use, keeping ``import lakehub`` instant."""
    if name in _SUBMODULES:
        import importlib

        return importlib.import_module(f"lakehub.{name}")
    raise AttributeError(f"module 'lakehub' has no attribute {name!r}")
