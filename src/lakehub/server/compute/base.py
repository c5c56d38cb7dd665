"""The contract every compute engine keeps (Dask through dask-gateway, Spark standalone, ...).

Rules:
- A cluster belongs to one user and is only ever listed, reached or stopped for that user (an
  administrator may list and stop anyone's, through the control plane).
- Its processes run as the owner's unix account when the hub runs as root, and reach the lake
  with the owner's own credentials: a cluster can read nothing its owner cannot.
- ``start`` checks the request against the owner's limits and raises ``ComputeError`` with a
  sentence a person understands (status 4xx) instead of starting something smaller or larger.
- Engines never import the web layer; the control plane's router calls them.
- The setting ``compute_engines`` chooses the engine of each kind (:func:`lakehub.server.compute.
  engines`), built by :meth:`Engine.of_hub` from an :class:`EngineContext`. The control plane
  calls ``open`` when it starts, ``close`` when it stops (clusters keep running: a restarted
  control plane adopts them), and ``stop_for_server`` when a user's notebook server stops.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lakehub.server.config import Settings
    from lakehub.server.runtime import Runtime


@dataclass(frozen=True)
class Running:
    """Something of a user's that counts against their limits: a cluster or a notebook server."""

    owner: str
    kind: str
    name: str
    memory: int  # the most it may use (a cluster's cap, a server's size)


class ComputeError(RuntimeError):
    """A refused or failed request; ``status`` is the HTTP status the API answers with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class ClusterRequest:
    workers: int = 2
    cores: float = 1.0  # per worker
    memory: int = 2 << 30  # bytes per worker
    idle_timeout: float | None = None  # seconds; None: the owner's policy
    server: str | None = None  # stop with this notebook server (Spark's profile behaviour)
    connect: bool = False  # Spark: a Spark Connect server holds the driver (no JVM in the client)


@dataclass
class Cluster:
    kind: str  # "dask" | "spark"
    name: str  # unique within its kind
    owner: str
    status: str  # "starting" | "running" | "stopping" | "stopped" | "failed"
    workers: int
    cores: float
    memory: int
    address: str = ""  # what a client connects to (scheduler or master URL)
    dashboard_url: str = ""  # reached through the hub's front door, for the owner only
    started: float = 0.0  # epoch seconds
    detail: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


Runnings = list["Running"]  # the Engine's ``list`` method hides the builtin there
Names = list[str]
Clusters = list["Cluster"]
# (owner, kind, request, the engine's running clusters, its head's memory) -> the caps of the
# new cluster (a compute.plan.ComputePlan), or ComputeError; called from an engine's thread
Planner = Callable[[str, str, ClusterRequest, Runnings, int], Any]


@dataclass(frozen=True)
class EngineContext:
    """What the control plane gives an engine to be built from."""

    settings: Settings
    runtime: Runtime
    service_token: str  # the control plane's JupyterHub token
    lake_env: Callable[[str], dict[str, str]]  # owner -> the variables that reach their lake
    plan: Planner  # every start checked against the owner's limits, all engines counted
    environment: Callable[[str], Path | None]  # a notebook environment's folder, once built
    ui_url: str  # the control plane's compute pages through the front door
    lake_endpoint: str = ""  # the lake's S3 address, the same for every user


class Engine(ABC):
    kind: str

    @classmethod
    @abstractmethod
    def of_hub(cls, hub: EngineContext) -> Engine:
        """The engine of a running hub."""

    @abstractmethod
    def start(self, owner: str, request: ClusterRequest) -> Cluster: ...

    @abstractmethod
    def list(self, owner: str | None = None) -> list[Cluster]:
        """The owner's clusters; everyone's with ``owner=None`` (administrators only)."""

    @abstractmethod
    def stop(self, owner: str, name: str) -> None:
        """Stop one of the owner's clusters; ``ComputeError(404)`` if it is not theirs."""

    def running(self) -> Runnings:
        """Every cluster of every owner as the planner counts it, so that a quota covers all
        engines; ``[]`` (the default) from an engine that reports its own with each plan."""
        return []

    def open(self) -> None:
        """The control plane starts: adopt the clusters still running, start background work."""
        return None

    def close(self) -> None:
        """The control plane stops: end background work; clusters keep running."""
        return None

    def pooled(self) -> Clusters:
        """Clusters started ahead of any request and nobody's yet (the default: none)."""
        return []

    def stop_for_server(self, owner: str, server: str) -> Names:
        """``owner``'s notebook server ``server`` stopped: stop the clusters that live with it;
        returns their names (the default: none do)."""
        return []
