"""Notebook metrics in Prometheus text format, from JupyterHub's own and the culler's records.

JupyterHub measures every spawn (request to a server that answers) and counts running servers
at ``/hub/metrics``; the culler writes one line per stopped server (:mod:`.culling`). This module
turns those into a few ``lakehub_*`` metrics with stable names:

- ``lakehub_spawn_duration_seconds`` histogram, labels ``status`` (success, failure, error) and
  ``reason`` (JupyterHub's, e.g. ``already-pending``)
- ``lakehub_spawn_failures_total`` counter: spawns that did not succeed (status failure or error)
- ``lakehub_running_servers`` gauge: servers ready now (from JupyterHub's user list)
- ``lakehub_culls_total`` counter: servers stopped for being idle
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector, CollectorRegistry

CONTENT_TYPE = CONTENT_TYPE_LATEST
HUB_SPAWN = "jupyterhub_server_spawn_duration_seconds"
SPAWN = "lakehub_spawn_duration_seconds"


class NotebookMetrics(Collector):
    def __init__(self, hub_text: str, running: int, culls: int) -> None:
        self.hub_text = hub_text
        self.running = running
        self.culls = culls

    def collect(self) -> Iterator[Metric]:
        hub = {f.name: f for f in text_string_to_metric_families(self.hub_text)}
        spawn = Metric(
            SPAWN, "Seconds from a spawn request to a server that answers, by outcome", "histogram"
        )
        failures = CounterMetricFamily(
            "lakehub_spawn_failures", "Spawns that did not succeed", labels=["status", "reason"]
        )
        failed: dict[tuple[str, str], float] = {}
        for s in hub[HUB_SPAWN].samples if HUB_SPAWN in hub else []:
            if s.name.endswith("_created"):
                continue
            spawn.add_sample(SPAWN + s.name[len(HUB_SPAWN) :], s.labels, s.value)
            status = s.labels.get("status", "")
            if s.name == HUB_SPAWN + "_count" and status != "success":
                key = (status, s.labels.get("reason", ""))
                failed[key] = failed.get(key, 0.0) + s.value
        for (status, reason), value in sorted(failed.items()):
            failures.add_metric([status, reason], value)
        yield spawn
        yield failures
        yield GaugeMetricFamily(
            "lakehub_running_servers", "Notebook servers running", value=self.running
        )
        yield CounterMetricFamily(
            "lakehub_culls", "Notebook servers stopped for being idle", value=self.culls
        )


def render(hub_text: str, running: int, culls: int) -> bytes:
    """The metrics page for JupyterHub's ``/hub/metrics`` text, the number of servers ready and
    the number of culls."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(NotebookMetrics(hub_text, running, culls))
    return generate_latest(registry)
