"""The control plane's own metrics, computed when the store scrapes ``/metrics``.

Names and labels (every series of one user carries ``user``: the label a user's queries are
restricted to):

- ``lakehub_component_up{component}``: 1 when the component answers its health check now
  (probed at each scrape, the proxy, gateway and warm starter included, which have no page)
- ``lakehub_component_restarts_total{component}``: restarts by the supervisor since ``up``
- ``lakehub_users``, ``lakehub_users_active``: accounts; those with a server running
- ``lakehub_server_memory_bytes{user,server}``, ``lakehub_server_memory_limit_bytes``,
  ``lakehub_server_cpu_seconds_total``, ``lakehub_server_cpu_limit`` (cores): each notebook
  server, kernels included, against its size
- ``lakehub_clusters{user,kind}``, ``lakehub_cluster_memory_limit_bytes{user,kind}``
- ``lakehub_quota_used_bytes{kind,name[,user]}``, ``lakehub_quota_max_bytes``
- ``lakehub_job_runs{user,job_name,state}``; ``lakehub_job_last_failed{user,job_name}`` (1: its
  last ended run failed; ``job`` is the store's own label, the component scraped)
- ``lakehub_stream_received_records_total{user,stream}`` (and ``_bytes_total``), acknowledged
  and durable; ``lakehub_stream_moved_records_total`` (and ``_bytes_total``), in the lake;
  ``lakehub_stream_errors_total``; ``lakehub_stream_lag_seconds``: receive time of the newest
  record less that of the newest one in the lake (the ingest process adds its buffer's figures)
- ``lakehub_disk_free_bytes``, ``lakehub_disk_size_bytes``: the data directory's file system
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector, CollectorRegistry
from sqlalchemy import func, select

from lakehub.server.config import Settings
from lakehub.server.db import Database, IngestStream, User
from lakehub.server.jobs.tables import Job, JobRun
from lakehub.server.notebooks import limits
from lakehub.server.runtime import load_runtime
from lakehub.server.supervisor import probe

PROBE_TIMEOUT_S = 1.0
ENDED = ("succeeded", "failed", "lost", "cancelled", "skipped", "missed")


@dataclass
class Snapshot:
    components: list[tuple[str, bool, int]] = field(default_factory=list)  # name, up, restarts
    users: int = 0
    servers: list[dict[str, Any]] = field(default_factory=list)
    clusters: list[tuple[str, str, int]] = field(default_factory=list)  # owner, kind, memory
    quotas: list[tuple[str, str, int, int | None]] = field(default_factory=list)
    job_runs: list[tuple[str, str, str, int]] = field(default_factory=list)  # owner, job, state, n
    job_last_failed: dict[tuple[str, str], bool] = field(default_factory=dict)
    disk: tuple[int, int] = (0, 0)  # free, size
    streams: list[tuple[str, str, list[float]]] = field(default_factory=list)  # owner, name, ...


def components(settings: Settings) -> list[tuple[str, bool, int]]:
    """Each supervised component: answers its health check now, restarts so far. None while
    the hub starts: components come up one after the other then."""
    rt = load_runtime(settings)
    comps = rt.components if rt and rt.state == "ready" else {}
    if not comps:
        return []
    with ThreadPoolExecutor(len(comps)) as pool:
        up = list(pool.map(lambda c: probe(c["health_url"], PROBE_TIMEOUT_S), comps.values()))
    return [
        (name, ok, int(c.get("restarts", 0)))
        for (name, c), ok in zip(comps.items(), up, strict=True)
    ]


def servers(
    run_dir: os.PathLike[str], active: dict[str, dict[str, dict[str, Any]]], cg: limits.Limits
) -> list[dict[str, Any]]:
    """Every active server (``Platform.active_servers``) with its use against its size."""
    out = []
    for user, named in active.items():
        for name, opts in named.items():
            key = limits.server_key(user, name)
            out.append(
                {
                    "user": user,
                    "server": name or "default",
                    "memory": cg.memory_used(key),
                    "memory_limit": int(opts.get("memory") or 0),
                    "cpu": cg.cpu_seconds(key),
                    "cpu_limit": float(opts.get("cpus") or 0),
                }
            )
    return out


def database(db: Database, snap: Snapshot) -> None:
    """Users and jobs, from the metadata."""
    with db.session() as s:
        snap.users = s.scalar(select(func.count()).select_from(User)) or 0
        for owner, st in s.execute(
            select(User.name, IngestStream).join(User, User.id == IngestStream.owner_id)
        ).tuples():
            lag = max(0.0, (st.last_event_at or 0.0) - (st.moved_until or st.last_event_at or 0.0))
            figures = [st.received_entries, st.received_bytes, st.moved_records, st.moved_bytes]
            snap.streams.append((owner, st.name, [*map(float, figures), st.errors, lag]))
        rows = s.execute(
            select(Job.owner, Job.name, JobRun.state, func.count())
            .join(JobRun, JobRun.job_id == Job.id)
            .group_by(Job.owner, Job.name, JobRun.state)
        ).all()
        snap.job_runs = [(o, n, st, c) for o, n, st, c in rows]
        last = (
            select(JobRun.job_id, func.max(JobRun.id).label("id"))
            .where(JobRun.state.in_(ENDED))
            .group_by(JobRun.job_id)
            .subquery()
        )
        for owner, name, state in s.execute(
            select(Job.owner, Job.name, JobRun.state)
            .join(last, last.c.job_id == Job.id)
            .join(JobRun, JobRun.id == last.c.id)
        ):
            snap.job_last_failed[(owner, name)] = state in ("failed", "lost")


def disk(path: os.PathLike[str]) -> tuple[int, int]:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize


class Figures(Collector):
    def __init__(self, snap: Snapshot) -> None:
        self.snap = snap

    def collect(self) -> Iterator[Metric]:
        snap = self.snap
        up = GaugeMetricFamily(
            "lakehub_component_up", "1: answers its health check", labels=["component"]
        )
        restarts = CounterMetricFamily(
            "lakehub_component_restarts", "Restarts by the supervisor", labels=["component"]
        )
        for name, ok, n in snap.components:
            up.add_metric([name], 1.0 if ok else 0.0)
            restarts.add_metric([name], n)
        yield up
        yield restarts
        yield GaugeMetricFamily("lakehub_users", "Accounts", value=snap.users)
        yield GaugeMetricFamily(
            "lakehub_users_active",
            "Users with a notebook server running",
            value=len({s["user"] for s in snap.servers}),
        )
        labels = ["user", "server"]
        mem = GaugeMetricFamily("lakehub_server_memory_bytes", "Bytes in use", labels=labels)
        mem_max = GaugeMetricFamily(
            "lakehub_server_memory_limit_bytes", "The size's memory", labels=labels
        )
        cpu = CounterMetricFamily("lakehub_server_cpu_seconds", "CPU seconds used", labels=labels)
        cpu_max = GaugeMetricFamily("lakehub_server_cpu_limit", "The size's cores", labels=labels)
        for s in snap.servers:
            key = [s["user"], s["server"]]
            if s["memory"] is not None:
                mem.add_metric(key, s["memory"])
            if s["cpu"] is not None:
                cpu.add_metric(key, s["cpu"])
            if s["memory_limit"]:  # known once the spawner has written the server's record
                mem_max.add_metric(key, s["memory_limit"])
            if s["cpu_limit"]:
                cpu_max.add_metric(key, s["cpu_limit"])
        yield from (mem, mem_max, cpu, cpu_max)
        clusters = GaugeMetricFamily(
            "lakehub_clusters", "Clusters running", labels=["user", "kind"]
        )
        cmem = GaugeMetricFamily(
            "lakehub_cluster_memory_limit_bytes", "Clusters' memory caps", labels=["user", "kind"]
        )
        count: dict[tuple[str, str], list[int]] = {}
        for owner, kind, memory in snap.clusters:
            count.setdefault((owner, kind), []).append(memory)
        for (owner, kind), mems in sorted(count.items()):
            clusters.add_metric([owner, kind], len(mems))
            cmem.add_metric([owner, kind], sum(mems))
        yield clusters
        yield cmem
        used = GaugeMetricFamily(
            "lakehub_quota_used_bytes",
            "Bytes stored under a quota",
            labels=["kind", "name", "user"],
        )
        top = GaugeMetricFamily(
            "lakehub_quota_max_bytes", "A quota's bytes", labels=["kind", "name", "user"]
        )
        for kind, name, used_bytes, max_bytes in snap.quotas:
            who = name if kind == "user" else ""
            used.add_metric([kind, name, who], used_bytes)
            if max_bytes is not None:
                top.add_metric([kind, name, who], max_bytes)
        yield used
        yield top
        runs = GaugeMetricFamily(
            "lakehub_job_runs", "Runs kept, by state", labels=["user", "job_name", "state"]
        )
        for owner, job, state, n in snap.job_runs:
            runs.add_metric([owner, job, state], n)
        failed = GaugeMetricFamily(
            "lakehub_job_last_failed", "1: the last ended run failed", labels=["user", "job_name"]
        )
        for (owner, job), bad in sorted(snap.job_last_failed.items()):
            failed.add_metric([owner, job], 1.0 if bad else 0.0)
        yield runs
        yield failed
        yield from streams(snap.streams)
        yield GaugeMetricFamily("lakehub_disk_free_bytes", "Free bytes", value=snap.disk[0])
        yield GaugeMetricFamily("lakehub_disk_size_bytes", "File system bytes", value=snap.disk[1])


def streams(rows: list[tuple[str, str, list[float]]]) -> Iterator[Metric]:
    labels = ["user", "stream"]
    families: list[CounterMetricFamily | GaugeMetricFamily] = [
        CounterMetricFamily("lakehub_stream_received_records", "Records received", labels=labels),
        CounterMetricFamily("lakehub_stream_received_bytes", "Bytes received", labels=labels),
        CounterMetricFamily("lakehub_stream_moved_records", "Records in the lake", labels=labels),
        CounterMetricFamily("lakehub_stream_moved_bytes", "Bytes in the lake", labels=labels),
        CounterMetricFamily("lakehub_stream_errors", "Records refused", labels=labels),
        GaugeMetricFamily("lakehub_stream_lag_seconds", "Not yet in the lake", labels=labels),
    ]
    for owner, name, values in rows:
        for family, value in zip(families, values, strict=True):
            family.add_metric([owner, name], value)
    yield from families


def render(snap: Snapshot) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(Figures(snap))
    return generate_latest(registry)
