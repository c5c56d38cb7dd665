"""The serving area's contract: what runs an endpoint's replicas.

A :class:`Runner` starts one replica (a process answering the Open Inference Protocol on its own
port, see :mod:`lakehub.singleuser.serve`) from a :class:`ReplicaSpec`, tells whether it still
runs, and stops it. It never decides what to run: the endpoints (``endpoints``) choose the
version, the replicas' number and size, and when traffic moves; the gateway (``gateway``) sends
requests only to replicas that answered a warm-up. ``LocalRunner`` (``local``) runs them on this
machine, as the owner's account when LakeHub runs as root, each in a cgroup of its size; on
Kubernetes the same endpoint is a KServe ``InferenceService`` (``kserve``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path


class ServingError(Exception):
    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class ReplicaSpec:
    key: str  # unique among the hub's replicas: <endpoint id>-<role>-<version>-<n>-<random>
    owner: str  # whose account runs it
    python: Path  # the environment's interpreter
    model_dir: Path  # the version's files, on this machine, readable by ``owner``
    name: str  # the model's name in the protocol's paths (the endpoint's)
    version: int
    cpus: float
    memory: int  # bytes
    batching: bool = False


@dataclass(frozen=True)
class Replica:
    spec: ReplicaSpec
    pid: int
    host: str
    port: int
    secret: str  # sent by the gateway with every request (``X-LakeHub-Replica-Key``)
    log: Path


class Runner(ABC):
    @abstractmethod
    def files_dir(self, owner: str, key: str) -> Path:
        """An empty directory for one replica set's model files, readable by ``owner``'s
        replicas once :meth:`start` runs (the local runner hands it over then)."""

    @abstractmethod
    def start(self, spec: ReplicaSpec) -> Replica:
        """Launch the replica; it is ready when its ``/v2/health/ready`` answers. Blocks
        briefly (process start), never until ready."""

    @abstractmethod
    def alive(self, replica: Replica) -> bool: ...

    @abstractmethod
    def stop(self, replica: Replica, grace: float = 5.0) -> None:
        """TERM, then KILL after ``grace`` seconds; releases its cgroup. Blocks."""

    @abstractmethod
    def why(self, replica: Replica) -> str:
        """The last lines the replica wrote (why it stopped or never became ready)."""

    @abstractmethod
    def run_once(
        self,
        python: Path,
        argv: list[str],
        env: dict[str, str],
        cwd: Path,
        owner: str,
        timeout: float,
    ) -> str:
        """``python -m argv[0] argv[1:]`` as ``owner``, once (a training): waits for it and
        returns what it wrote, output and errors together. ``TimeoutError`` after ``timeout``
        seconds (it is killed). Blocks."""

    @abstractmethod
    def stop_leftovers(self) -> int:
        """Stop replicas a previous run of the control plane left running; how many."""

    def close(self) -> None:  # noqa: B027 (a runner may hold nothing)
        """Release what the runner holds beside its replicas (the control plane stops)."""
