"""The platform's metrics, dashboards and alerts, as the portal's Monitoring page shows them::

    import lakehub.monitoring as mon
    mon.query("lakehub_server_memory_bytes")             # now: your servers' memory
    mon.query("rate(lakehub_stream_received_records_total[5m])", hours=6)   # a range
    mon.dashboard("mine", hours=24)                      # every panel's series
    mon.alerts(firing=True)                              # yours (an administrator's: all)
    mon.silence("the feed is being rebuilt", rule="JobFailing", labels={"job_name": "feed"})
    mon.end_silence(3)

A user's queries read only the series labelled with their name; an administrator's read all.
Each series is ``{"labels": {...}, "points": [[unix seconds, "value"], ...]}``: values are
written as Prometheus' API writes them (``"0.25"``, ``"NaN"``), ``float()`` reads them.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from lakehub.client import default

if TYPE_CHECKING:
    from lakehub.client import Client

BASE = "/api/ops"


def query(
    expr: str,
    hours: float | None = None,
    step: float | None = None,
    at: float | None = None,
    client: Client | None = None,
) -> list[dict[str, Any]]:
    """PromQL: its value now (or ``at``, unix seconds), or over the last ``hours`` every
    ``step`` seconds (default: some 300 points)."""
    c = default(client)
    params: dict[str, Any] = {"expr": expr}
    if hours is None:
        if at is not None:
            params["time"] = at
    else:
        end = time.time() if at is None else at
        params |= {"start": end - hours * 3600, "end": end}
        params["step"] = step or max(1.0, round(hours * 3600 / 300))
    return list(c.request("GET", f"{BASE}/query", params=params)["series"])


def dashboards(client: Client | None = None) -> list[dict[str, Any]]:
    return list(default(client).request("GET", f"{BASE}/dashboards"))


def dashboard(name: str, hours: float = 1.0, client: Client | None = None) -> dict[str, Any]:
    """A dashboard's panels, each with its series over the last ``hours``."""
    out: dict[str, Any] = default(client).request(
        "GET", f"{BASE}/dashboards/{name}", params={"hours": hours}
    )
    return out


def alerts(firing: bool = False, client: Client | None = None) -> list[dict[str, Any]]:
    """Newest first, with when each fired, resolved and who silenced it."""
    return list(default(client).request("GET", f"{BASE}/alerts", params={"firing": firing}))


def silence(
    reason: str,
    rule: str = "",
    labels: dict[str, str] | None = None,
    hours: float = 1.0,
    client: Client | None = None,
) -> dict[str, Any]:
    """Keep the notices of the alerts matching ``rule`` ('': any) and ``labels`` from going
    out for ``hours``; a user silences their own alerts only."""
    body = {"reason": reason, "rule": rule, "matchers": labels or {}, "hours": hours}
    out: dict[str, Any] = default(client).request("POST", f"{BASE}/silences", json=body)
    return out


def silences(client: Client | None = None) -> list[dict[str, Any]]:
    return list(default(client).request("GET", f"{BASE}/silences"))


def end_silence(silence_id: int, client: Client | None = None) -> dict[str, Any]:
    out: dict[str, Any] = default(client).request("DELETE", f"{BASE}/silences/{silence_id}")
    return out
