"""Every endpoint's figures in Prometheus text format, labelled ``endpoint="<owner>/<name>"``
and ``user="<owner>"``:

- ``lakehub_endpoint_requests_total`` counter, label ``code`` (the status callers got, 503s of
  no ready replica and refusals included)
- ``lakehub_endpoint_request_duration_seconds`` histogram: from the request's arrival at the
  gateway to its answer
- ``lakehub_endpoint_queue`` gauge: requests in the gateway now, waiting for a replica's answer
- ``lakehub_endpoint_replicas_ready`` gauge, label ``role`` (main, canary)
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector, CollectorRegistry

from lakehub.server.serving.gateway import BUCKETS
from lakehub.server.serving.rollouts import Route

CONTENT_TYPE = CONTENT_TYPE_LATEST


class EndpointMetrics(Collector):
    def __init__(self, routes: Iterable[Route]) -> None:
        self.routes = list(routes)

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "lakehub_endpoint_requests",
            "Requests answered, by status",
            labels=["endpoint", "user", "code"],
        )
        latency = HistogramMetricFamily(
            "lakehub_endpoint_request_duration_seconds",
            "Seconds from a request's arrival to its answer",
            labels=["endpoint", "user"],
        )
        queue = GaugeMetricFamily(
            "lakehub_endpoint_queue", "Requests in the gateway now", labels=["endpoint", "user"]
        )
        ready = GaugeMetricFamily(
            "lakehub_endpoint_replicas_ready",
            "Replicas taking requests",
            labels=["endpoint", "user", "role"],
        )
        for route in sorted(self.routes, key=lambda r: (r.owner, r.name)):
            label = f"{route.owner}/{route.name}"
            stats = route.pool.stats
            for code, n in sorted(stats.codes.items()):
                requests.add_metric([label, route.owner, str(code)], n)
            cumulative, total = [], 0
            for bound, n in zip([*map(str, BUCKETS), "+Inf"], stats.buckets, strict=True):
                total += n
                cumulative.append((bound, total))
            latency.add_metric([label, route.owner], cumulative, stats.total)
            queue.add_metric([label, route.owner], stats.waiting)
            for role in ("main", "canary"):
                ready.add_metric([label, route.owner, role], len(route.pool.ready(role)))
        yield from (requests, latency, queue, ready)


def render(routes: Iterable[Route]) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(EndpointMetrics(routes))
    return generate_latest(registry)
