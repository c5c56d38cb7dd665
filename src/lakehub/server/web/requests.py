"""The control plane's own requests, for its metrics page: every answer counted by its route
(the path template below the service prefix, e.g. ``/api/jobs/{name}``: a bounded set), method and
status, with its duration. MLflow's client calls (``/mlflow/api/2.0/...``) are the tracking
server's figures. The endpoints' door answers before the router: its requests are counted by
the endpoints' own metrics.

- ``lakehub_api_requests_total{route,method,code}``
- ``lakehub_api_request_duration_seconds{route}`` (histogram)
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class RequestCounts:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.count = Counter(
            "lakehub_api_requests",
            "Requests answered by the control plane",
            ["route", "method", "code"],
            registry=self.registry,
        )
        self.seconds = Histogram(
            "lakehub_api_request_duration_seconds",
            "From a request's arrival to its answer",
            ["route"],
            buckets=BUCKETS,
            registry=self.registry,
        )

    def page(self) -> bytes:
        return generate_latest(self.registry)


class CountRequests:
    """ASGI middleware over the app: counts each HTTP answer in ``counts``."""

    def __init__(self, app: Any, counts: RequestCounts) -> None:
        self.app, self.counts = app, counts

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0 = time.perf_counter()

        async def sending(message: Any) -> None:
            if message["type"] == "http.response.start":
                route = getattr(scope.get("route"), "path", None) or "unmatched"
                self.counts.count.labels(route, scope["method"], str(message["status"])).inc()
                self.counts.seconds.labels(route).observe(time.perf_counter() - t0)
            await send(message)

        return await self.app(scope, receive, sending)
