"""Whether one user may start one more cluster, and with which caps.

Rules (documented in docs/howto/compute.md):
- Per worker: at most ``compute_max_worker_cores`` cores and ``compute_max_worker_memory``; per
  cluster at most ``compute_max_workers`` workers; per user at most ``compute_max_clusters``
  clusters of all kinds at once.
- Memory quotas are the notebook policies' (``lakehub policy set --max-memory``): a *user*
  quota bounds that user's servers and clusters together, a *group* quota all its members'. A
  cluster counts with the most it may grow to (its cap), so scaling it later can never break a
  quota; a new cluster's cap is what is left, and it is refused if not even one worker fits.
- Idle clusters stop after ``compute_idle_timeout`` seconds (a request may ask for less).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lakehub.server.compute.base import ComputeError, Running
from lakehub.server.config import Settings
from lakehub.server.notebooks.policy import Policies
from lakehub.sizes import human


@dataclass(frozen=True)
class ComputePlan:
    cluster_max_workers: int
    cluster_max_cores: float
    cluster_max_memory: int
    idle_timeout: float

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def plan(
    settings: Settings,
    policies: Policies,
    owner: str,
    admin: bool,
    kind: str,
    worker_cores: float,
    worker_memory: int,
    running: list[Running],
    idle_timeout: float | None = None,
    head_cores: float = 0,
    head_memory: int = 0,
) -> ComputePlan:
    """The caps of a new cluster for ``owner``, or a :class:`ComputeError` that says why not.

    ``running`` holds every server and cluster of the hub (other users' count for groups);
    ``head_*`` is what the cluster's scheduler or master takes besides its workers."""
    if worker_cores <= 0 or worker_cores > settings.compute_max_worker_cores:
        raise ComputeError(
            f"a worker may have up to {settings.compute_max_worker_cores} cores "
            f"(asked: {worker_cores:g})"
        )
    if worker_memory <= 0 or worker_memory > settings.compute_max_worker_memory:
        raise ComputeError(
            f"a worker may have up to {human(settings.compute_max_worker_memory)}"
            f" of memory (asked: {human(worker_memory)})"
        )
    clusters = [r for r in running if r.owner == owner and r.kind != "server"]
    if len(clusters) >= settings.compute_max_clusters and not admin:
        names = ", ".join(f"{r.kind} {r.name[:12]}" for r in clusters)
        raise ComputeError(
            f"you may run at most {settings.compute_max_clusters} cluster(s) at "
            f"once (running: {names}); stop one first",
            403,
        )
    cap = head_memory + settings.compute_max_workers * worker_memory
    first = head_memory + worker_memory
    choices = policies.choices(owner, admin)
    budgets: list[tuple[str, int, list[Running]]] = []
    if choices.max_memory is not None:
        budgets.append(
            ("your memory quota", choices.max_memory, [r for r in running if r.owner == owner])
        )
    members = policies.directory.groups()
    for group in policies.group_policies(owner):
        if group.max_memory is not None:
            inside = set(members.get(group.name, []))
            budgets.append(
                (
                    f"group {group.name!r}'s memory quota",
                    group.max_memory,
                    [r for r in running if r.owner in inside],
                )
            )
    for what, budget, users in budgets:
        used = sum(r.memory for r in users)
        left = budget - used
        if left < first:
            names = ", ".join(f"{r.kind} {r.name[:12]}" for r in users) or "nothing"
            raise ComputeError(
                f"a {kind} cluster needs {human(first)} for its first worker "
                f"(and its scheduler), but {what} of "
                f"{human(budget)} has {human(max(left, 0))} left (in use: "
                f"{names})",
                403,
            )
        cap = min(cap, left)
    workers = max(1, min(settings.compute_max_workers, (cap - head_memory) // worker_memory))
    timeout = float(settings.compute_idle_timeout)
    if idle_timeout is not None and 0 < idle_timeout < timeout:
        timeout = float(idle_timeout)
    return ComputePlan(
        cluster_max_workers=workers,
        cluster_max_cores=head_cores + workers * worker_cores,
        cluster_max_memory=head_memory + workers * worker_memory,
        idle_timeout=timeout,
    )
