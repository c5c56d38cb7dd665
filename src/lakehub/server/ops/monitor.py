"""The area's one service: the store, the alert rules' loop, the dashboards, the metrics page.

Built by the platform (``Monitoring(settings, runtime, db, send_mail)``); ``start`` starts the
alerts' loop when a store is there, ``close`` stops it. ``page`` is the control plane's
``/metrics``: the figures of :mod:`.figures` over what the platform hands it (the active
servers and the clusters), plus alerts firing by severity.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import httpx
from prometheus_client import REGISTRY, generate_latest
from sqlalchemy import func, select

from lakehub.server.config import Settings
from lakehub.server.db import Database, Quota
from lakehub.server.notebooks import limits
from lakehub.server.ops import dashboards, figures
from lakehub.server.ops.alerts import Alerts, Notifier
from lakehub.server.ops.base import MetricsStore, NoStore, OpsError, Series, SeriesJson
from lakehub.server.ops.tables import OpsAlert
from lakehub.server.ops.victoria import open_store
from lakehub.server.runtime import Runtime, load_runtime, tokens

log = logging.getLogger("lakehub.server.ops")


def first_sample(store: MetricsStore, settings: Settings, rt: Runtime) -> None:
    """The control plane's figures stored in ``store`` the moment the hub is ready: the store's
    scrapes are spread over their interval, so its own first one may come up to an interval
    later."""
    try:
        page = httpx.get(
            rt.api_url + "/metrics",
            headers={"Authorization": f"Bearer {tokens(settings).metrics}"},
            timeout=10,
        )
        if page.status_code == 200:
            store.push(_labelled(page.text, component="api"), {"job": "api", "instance": "api"})
    except (httpx.HTTPError, OpsError) as err:
        log.warning("no first sample: %s", err)


def _labelled(page: str, **defaults: str) -> bytes:
    """A metrics page with ``defaults`` added to each series that lacks them (as the scrape's
    ``honor_labels`` does: the control plane's figures about other components keep theirs)."""
    from prometheus_client.parser import text_string_to_metric_families

    lines = []
    for family in text_string_to_metric_families(page):
        for s in family.samples:
            labels = {**defaults, **s.labels}
            text = ",".join(
                f'{k}="{v.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
                for k, v in sorted(labels.items())
            )
            lines.append(f"{s.name}{{{text}}} {s.value!r}")
    return ("\n".join(lines) + "\n").encode()


class Monitoring:
    def __init__(
        self,
        settings: Settings,
        rt: Runtime,
        db: Database,
        send_mail: Callable[[str, str, str], None] | None = None,
    ) -> None:
        self.settings, self.db = settings, db
        self.store = open_store(settings, rt)
        notifier = Notifier(settings.alert_webhooks, settings.alert_emails, send_mail, rt.front_url)
        self.alerts = Alerts(
            db, self.store, notifier, settings.alert_interval, ready=partial(_ready, settings)
        )
        self.boards = dashboards.load()

    @property
    def running(self) -> bool:
        return not isinstance(self.store, NoStore)

    def start(self) -> None:
        if self.running:
            self.alerts.start()

    def close(self) -> None:
        if self.running:
            self.alerts.stop()
        self.store.close()

    def query(self, expr: str, at: float | None, viewer: str, admin: bool) -> list[Series]:
        return self.store.query(expr, time.time() if at is None else at, _only(viewer, admin))

    def query_range_json(
        self, expr: str, start: float, end: float, step: float, viewer: str, admin: bool
    ) -> list[SeriesJson]:
        return self.store.query_range_json(expr, start, end, step, _only(viewer, admin))

    def findings(self, points: list[tuple[float, str, float]]) -> None:
        """Anomalies found in the operations data, stored as ``lakehub_ops_anomalies`` at their
        times (1 a component and minute found anomalous)."""
        lines = [
            f'lakehub_ops_anomalies{{component="{c}"}} 1 {int(t * 1000)}'
            for t, c, _ in points
            if c.replace("-", "").isalnum()
        ]
        if lines:
            self.store.push("\n".join(lines).encode() + b"\n", {"job": "anomalies"})

    # the metrics page -------------------------------------------------------------------------
    def page(self, active: dict[str, dict[str, dict[str, Any]]], clusters: list[Any]) -> bytes:
        """``active``: ``Platform.active_servers()``; ``clusters``: the engines' ``Running``s."""
        snap = figures.Snapshot(
            components=figures.components(self.settings),
            servers=figures.servers(
                self.settings.run_dir, active, limits.of_hub(str(self.settings.data_dir))
            ),
            clusters=[(c.owner, c.kind, c.memory) for c in clusters],
            disk=figures.disk(self.settings.data_dir),
        )
        figures.database(self.db, snap)
        with self.db.session() as s:
            snap.quotas = [
                (q.kind, q.name, q.used_bytes, q.max_bytes) for q in s.scalars(select(Quota))
            ]
            firing = s.execute(
                select(OpsAlert.severity, func.count())
                .where(OpsAlert.resolved_ms.is_(None))
                .group_by(OpsAlert.severity)
            ).all()
        lines = ["# TYPE lakehub_alerts_firing gauge"]
        lines += [f'lakehub_alerts_firing{{severity="{sev}"}} {n}' for sev, n in firing]
        own = generate_latest(REGISTRY)  # this process's memory, CPU, files
        return figures.render(snap) + ("\n".join(lines) + "\n").encode() + own


def _ready(settings: Settings) -> bool:
    rt = load_runtime(settings)
    return rt is not None and rt.state == "ready"


def _only(viewer: str, admin: bool) -> dict[str, str] | None:
    """A user's queries read the series labelled with their name, an administrator's all."""
    return None if admin else {"user": viewer}
