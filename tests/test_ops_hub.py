"""Monitoring on a real hub (scrapes and alerts every second): every component's metrics reach
the store; a notebook server's memory against its size is its owner's to read and no one
else's; a component killed with SIGKILL raises its alert, told to a webhook on 127.0.0.1, and
the alert resolves once the supervisor has restarted it."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from conftest import start_hub, stop_hub
from hubs import Hub
from inproc import WebhookSink
from kernel import start_server, stop_server

OPS = "/services/lakehub/api/ops"


@pytest.fixture(scope="module")
def watched() -> Iterator[tuple[Hub, WebhookSink]]:
    sink = WebhookSink()
    # a scrape every 2 s: one may take more than a second on a loaded machine
    hooks = json.dumps([sink.url])
    hub = start_hub(metrics_interval="2", alert_interval="1", alert_webhooks=hooks)
    try:
        yield hub, sink
    finally:
        stop_hub(hub)
        sink.stop()


def query(c: Any, expr: str) -> dict[str, float]:
    """Each series' latest value, by its component (or user/server)."""
    r = c.get(f"{OPS}/query", params={"expr": expr})
    assert r.status_code == 200, r.text
    out = {}
    for s in r.json()["series"]:
        labels = s["labels"]
        key = (
            f"{labels['user']}/{labels.get('server')}" if "user" in labels else labels["component"]
        )
        out[key] = float(s["points"][-1][1])
    return out


def wait_for(what: str, check: Any, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:.0f} s: {what}")
        time.sleep(0.25)
    return found


def test_every_component_is_scraped_and_a_server_is_its_owner_s(
    watched: tuple[Hub, WebhookSink],
) -> None:
    hub, _ = watched
    admin = hub.http("admin")
    scraped = {"api", "hub", "lake", "ingest", "metrics", "proxy"}  # each serves a metrics page
    wait_for("every page scraped", lambda: scraped <= set(query(admin, "up == 1")))
    # those without a page of their own: the control plane's health probes
    probed = {"proxy", "gateway", "warm", "lake"}
    wait_for("the probes", lambda: probed <= set(query(admin, "lakehub_component_up == 1")))
    # each component's own figures, with the same label
    wait_for(  # a page's first scrape may come after another page's 'up' (a loaded machine)
        "each component's memory",
        lambda: scraped <= set(query(admin, "max by (component) (process_resident_memory_bytes)")),
    )
    # a notebook server, against its size: its owner's series, nobody else's
    hub.quick_user("opsann")
    hub.quick_user("opsbob")
    token = hub.token("opsann")
    # the metrics pages answer the store's token only, not a user's, not no one's
    ingest = f"http://127.0.0.1:{hub.runtime()['ports']['ingest_http']}/metrics"
    for headers in ({}, {"Authorization": f"Bearer {token}"}):
        assert httpx.get(ingest, headers=headers, timeout=10).status_code == 403
    start_server(hub.url, "opsann", token)
    try:
        a, b = hub.http("opsann"), hub.http("opsbob")
        limit = wait_for(
            "the server's size scraped", lambda: query(a, "lakehub_server_memory_limit_bytes")
        )
        assert list(limit) == ["opsann/default"] and limit["opsann/default"] > 0
        assert query(b, "lakehub_server_memory_limit_bytes") == {}
        used = query(a, "lakehub_server_memory_bytes")
        if used:  # measured where the server runs in a cgroup of its own
            assert 0 < used["opsann/default"] <= limit["opsann/default"]

        def drawn() -> list[str]:  # a range leaves out its newest second (the store's latency)
            board = a.get(f"{OPS}/dashboards/mine", params={"hours": 0.1}).json()
            panel = next(p for p in board["panels"] if p["title"] == "My servers' memory limit")
            return [s["name"] for s in panel["series"]]

        assert wait_for("the panel's series", drawn) == ["default"]
    finally:
        stop_server(hub.url, "opsann", token)


def test_a_killed_component_fires_its_alert_and_it_resolves(
    watched: tuple[Hub, WebhookSink],
) -> None:
    hub, sink = watched
    admin = hub.http("admin")
    wait_for("ingest scraped", lambda: query(admin, 'up{component="ingest"} == 1'))
    pid = hub.runtime()["components"]["ingest"]["pid"]
    before = len(sink.got)  # the notices from now on: the kill's
    os.kill(pid, signal.SIGKILL)

    def told(status: str) -> list[dict[str, Any]]:
        return [
            b
            for b in sink.got[before:]
            if b["status"] == status
            and b["commonLabels"].get("alertname") == "ComponentDown"
            and b["commonLabels"].get("component") == "ingest"
        ]

    (fired,) = wait_for("the webhook told it fired", lambda: told("firing"), timeout=30)
    assert fired["alerts"][0]["annotations"]["summary"] == "ingest does not answer"
    wait_for("the webhook told it resolved", lambda: told("resolved"), timeout=60)
    assert hub.status()["components"]["ingest"]["healthy"]  # restarted, answering
    assert hub.runtime()["components"]["ingest"]["pid"] != pid
    history = admin.get(f"{OPS}/alerts").json()
    down = [x for x in history if x["rule"] == "ComponentDown"]
    alert = next(x for x in down if x["labels"] == {"component": "ingest"})  # the newest
    assert alert["state"] == "resolved" and alert["resolved_ms"] > alert["fired_ms"]
