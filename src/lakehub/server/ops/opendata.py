"""The platform's own operations data, published every day as an open, pseudonymised dataset.

Each day (after midnight UTC, and for a missing yesterday when the control plane starts) the
day before, if the hub ran then, is written to the space ``opsdata`` (bucket
``space-opsdata``), which every user may read (a grant to the built-in group ``everyone``)
and only its owner, the first administrator, may write:

- ``metrics/date=YYYY-MM-DD/part-0.parquet``: the series of :data:`ALLOWLIST` at one-minute
  resolution: ``ts`` (UTC), ``metric``, ``labels`` (JSON), ``value``
- ``alerts/date=.../part-0.parquet``: alerts fired that day: ``fired_at``, ``resolved_at``,
  ``rule``, ``severity``, ``labels``, ``silenced``
- ``events/date=.../part-0.parquet``: ``ts``, ``kind`` (``component.restart``, ``job.failed``,
  ``space.grant``, ...), ``subject``
- ``DATASHEET.md``: the schema, how it is pseudonymised, the licence

Pseudonymisation: every user, space, server, stream, job and endpoint name (labels ``user``,
``space``, ``name``, ``server``, ``stream``, ``job_name``, ``endpoint``, and events' subjects)
becomes ``HMAC-SHA256(key, name)`` cut to 16 hex digits (the key, ``state/ops-data.key``, never
leaves the hub: the same name maps to the same value every day, and cannot be tried without
it); free text (alerts' summaries, silences' reasons, events' details, error messages) is left
out. The three tables are registered in the catalog as ``ops_metrics``, ``ops_alerts`` and
``ops_events``, partitioned by ``date``. The owner's job ``ops-anomalies`` (made with the space;
its code is :mod:`.anomaly_job`) runs the AI library's anomaly detector on each day.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import io
import json
import logging
import threading
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from lakehub.server.db import Database, Event
from lakehub.server.jobs.tables import Job, JobRun
from lakehub.server.ops.base import MetricsStore
from lakehub.server.ops.tables import OpsAlert

if TYPE_CHECKING:
    import pyarrow as pa

log = logging.getLogger("lakehub.server.ops")
SPACE = "opsdata"
JOB = "ops-anomalies"
BUCKET = f"space-{SPACE}"
LICENCE = "CC-BY-4.0"
STEP_S = 60
ALLOWLIST = (
    "lakehub_component_up",
    "lakehub_component_restarts_total",
    "lakehub_users",
    "lakehub_users_active",
    "lakehub_server_memory_bytes",
    "lakehub_server_memory_limit_bytes",
    "lakehub_server_cpu_seconds_total",
    "lakehub_clusters",
    "lakehub_stream_received_records_total",
    "lakehub_stream_lag_seconds",
    "lakehub_ingest_buffer_bytes",
    "lakehub_endpoint_requests_total",
    "lakehub_job_runs",
    "lakehub_alerts_firing",
    "lakehub_disk_free_bytes",
    "lakehub_spawn_duration_seconds_count",
    "lakehub_spawn_failures_total",
    "process_resident_memory_bytes",
    "process_cpu_seconds_total",
    "scrape_duration_seconds",
)
NAMED = ("user", "space", "name", "server", "stream", "job_name", "endpoint")
DROPPED = ("__name__", "job", "instance", "exported_component")


@functools.cache
def schema(name: str) -> pa.Schema:
    """The export's tables (pyarrow imported on first use: not at the control plane's start)."""
    import pyarrow as pa

    return {
        "metrics": pa.schema(
            [
                ("ts", pa.timestamp("s", tz="UTC")),
                ("metric", pa.string()),
                ("labels", pa.string()),
                ("value", pa.float64()),
            ]
        ),
        "alerts": pa.schema(
            [
                ("fired_at", pa.timestamp("ms", tz="UTC")),
                ("resolved_at", pa.timestamp("ms", tz="UTC")),
                ("rule", pa.string()),
                ("severity", pa.string()),
                ("labels", pa.string()),
                ("silenced", pa.bool_()),
            ]
        ),
        "events": pa.schema(
            [("ts", pa.timestamp("ms", tz="UTC")), ("kind", pa.string()), ("subject", pa.string())]
        ),
    }[name]


DESCRIPTIONS = {
    "metrics": "The hub's own metrics, one sample a minute, pseudonymised (LakeHub operations "
    "data).",
    "alerts": "Every alert the hub fired, with when it resolved, pseudonymised (LakeHub "
    "operations data).",
    "events": "Component restarts, failed job runs and the audit trail's actions, pseudonymised "
    "(LakeHub operations data).",
}
Put = Callable[[str, bytes], None]  # key in the bucket, bytes: written as the space's owner


class Pseudonyms:
    def __init__(self, key: bytes) -> None:
        self.key = key

    def __call__(self, name: str) -> str:
        return hmac.new(self.key, name.encode(), hashlib.sha256).hexdigest()[:16]

    def labels(self, labels: dict[str, str]) -> str:
        out = {k: (self(v) if k in NAMED and v else v) for k, v in labels.items()}
        return json.dumps({k: v for k, v in sorted(out.items()) if k not in DROPPED})


def day_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return start, start + timedelta(days=1)


def metrics(store: MetricsStore, day: date, names: Pseudonyms) -> pa.Table:
    import pyarrow as pa

    start, end = day_bounds(day)
    cols: dict[str, list[Any]] = {"ts": [], "metric": [], "labels": [], "value": []}
    last = end.timestamp() - STEP_S
    for metric in ALLOWLIST:  # each minute's last sample (not the sample at the minute)
        expr = f"last_over_time({metric}[{STEP_S}s])"
        for s in store.query_range(expr, start.timestamp(), last, STEP_S):
            labels = names.labels(s.labels)
            for t, v in s.points:
                cols["ts"].append(datetime.fromtimestamp(float(t), UTC))
                cols["metric"].append(metric)
                cols["labels"].append(labels)
                cols["value"].append(float(v))
    return pa.table(cols, schema=schema("metrics"))


def alerts(db: Database, day: date, names: Pseudonyms) -> pa.Table:
    import pyarrow as pa

    start, end = (int(t.timestamp() * 1000) for t in day_bounds(day))
    ms = lambda x: None if x is None else datetime.fromtimestamp(x / 1000, UTC)  # noqa: E731
    cols: dict[str, list[Any]] = {k: [] for k in schema("alerts").names}
    with db.session() as s:
        for a in s.scalars(
            select(OpsAlert).where(OpsAlert.fired_ms >= start, OpsAlert.fired_ms < end)
        ):
            cols["fired_at"].append(ms(a.fired_ms))
            cols["resolved_at"].append(ms(a.resolved_ms))
            cols["rule"].append(a.rule)
            cols["severity"].append(a.severity)
            cols["labels"].append(names.labels(json.loads(a.labels)))
            cols["silenced"].append(a.silence_id is not None)
    return pa.table(cols, schema=schema("alerts"))


def events(db: Database, store: MetricsStore, day: date, names: Pseudonyms) -> pa.Table:
    """Restarts (from the supervisor's counter), job runs that failed, the audit trail."""
    import pyarrow as pa

    start, end = day_bounds(day)
    rows: list[tuple[datetime, str, str]] = []
    span = end.timestamp() - STEP_S
    restarts = "increase(lakehub_component_restarts_total[1m]) > 0"
    for series in store.query_range(restarts, start.timestamp(), span, STEP_S):
        for t, v in series.points:
            for _ in range(max(1, round(float(v)))):
                ts = datetime.fromtimestamp(float(t), UTC)
                rows.append((ts, "component.restart", series.labels.get("component", "")))
    lo, hi = int(start.timestamp() * 1000), int(end.timestamp() * 1000)
    with db.session() as s:
        for owner, state, ended in s.execute(
            select(Job.owner, JobRun.state, JobRun.ended_ms)
            .join(JobRun, JobRun.job_id == Job.id)
            .where(
                JobRun.ended_ms >= lo, JobRun.ended_ms < hi, JobRun.state.in_(("failed", "lost"))
            )
        ):
            at = datetime.fromtimestamp((ended or 0) / 1000, UTC)
            rows.append((at, f"job.{state}", names(owner)))
        naive = (start.replace(tzinfo=None), end.replace(tzinfo=None))
        for ev in s.scalars(select(Event).where(Event.at >= naive[0], Event.at < naive[1])):
            rows.append((ev.at.replace(tzinfo=UTC), ev.action, names(ev.actor)))
    rows.sort()
    cols = {
        "ts": [r[0] for r in rows],
        "kind": [r[1] for r in rows],
        "subject": [r[2] for r in rows],
    }
    return pa.table(cols, schema=schema("events"))


def parquet(table: pa.Table) -> bytes:
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    return buf.getvalue()


DATASHEET = """# LakeHub operations data

What this hub did, every day: its components' health and load, its alerts and its events, for
anyone to study (capacity, failures, anomaly detection). Written each day after midnight UTC
for the day before, by the hub itself.

## Tables (Parquet, partitioned by `date=YYYY-MM-DD`; in the catalog as ops_metrics, ops_alerts,
ops_events)

- `metrics/`: `ts` (timestamp, UTC, one a minute), `metric` (one of: {metrics}), `labels` (a JSON
  object), `value` (double)
- `alerts/`: `fired_at`, `resolved_at` (timestamps, UTC; empty while firing), `rule`, `severity`,
  `labels` (JSON), `silenced` (boolean)
- `events/`: `ts`, `kind` (`component.restart`, `job.failed`, `job.lost`, or an audit action such
  as `user.create` or `space.grant`), `subject` (a component, or a pseudonym)

## Pseudonymisation

Every name of a person or of their things (labels {named}; events' subjects but components) is
replaced by the first 16 hex digits of HMAC-SHA256 under a key kept by the hub alone: the same
name has the same pseudonym every day, and a name cannot be tried against it without the key.
Free text is left out: alerts' summaries, silences' reasons, audit details, error messages.

## Licence

{licence} (https://creativecommons.org/licenses/by/4.0/): share and adapt, naming the source.
"""


class OpenData:
    """The daily export; ``prepare`` makes the space, its grant and its datasheet, ``export``
    writes one day, ``start`` runs the daily loop."""

    def __init__(
        self,
        db: Database,
        store: MetricsStore,
        key: bytes,
        put: Put,
        prepare: Callable[[], None],
        register: Callable[[str, str, str], None],
        exists: Callable[[str], bool],
    ) -> None:
        self.db, self.store, self.put, self.exists = db, store, put, exists
        self.names = Pseudonyms(key)
        self._prepare, self._register = prepare, register
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def export(self, day: date) -> dict[str, int]:
        """Write ``day``'s three tables (again, if they are there); rows per table."""
        self._prepare()
        self.put(
            "DATASHEET.md",
            DATASHEET.format(
                metrics=", ".join(ALLOWLIST), named=", ".join(NAMED), licence=LICENCE
            ).encode(),
        )
        tables = {
            "metrics": metrics(self.store, day, self.names),
            "alerts": alerts(self.db, day, self.names),
            "events": events(self.db, self.store, day, self.names),
        }
        for name, table in tables.items():
            self.put(f"{name}/date={day.isoformat()}/part-0.parquet", parquet(table))
        for name in tables:
            self._register(f"ops_{name}", f"s3://{BUCKET}/{name}/", DESCRIPTIONS[name])
        log.info("operations data of %s exported", day)
        return {name: t.num_rows for name, t in tables.items()}

    def exported(self, day: date) -> bool:
        return self.exists(f"metrics/date={day.isoformat()}/part-0.parquet")

    def ran(self, day: date) -> bool:
        """Whether the hub was watched that day (a hub started today has no yesterday)."""
        _, end = day_bounds(day)
        return bool(self.store.query("count_over_time(lakehub_component_up[1d])", end.timestamp()))

    def start(self) -> None:
        def run() -> None:
            while not self._stop.is_set():
                yesterday = datetime.now(UTC).date() - timedelta(days=1)
                try:
                    if self.ran(yesterday) and not self.exported(yesterday):
                        self.export(yesterday)
                except Exception:
                    log.exception("the operations data of %s could not be exported", yesterday)
                now = datetime.now(UTC)
                tomorrow = datetime(now.year, now.month, now.day, tzinfo=UTC) + timedelta(days=1)
                self._stop.wait((tomorrow - now).total_seconds() + 300)  # 00:05 UTC

        self._thread = threading.Thread(target=run, name="ops-data", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)


def for_platform(
    settings: Any,
    db: Database,
    store: MetricsStore,
    directory: Any,
    spaces: Any,
    catalog: Any,
    files: Any,
    jobs: Any,
) -> OpenData:
    """The export over the platform's services: the space owned by the first administrator,
    written and registered with that administrator's own keys and rights."""
    from lakehub.server.identity.users import EVERYONE as GROUP
    from lakehub.server.identity.users import UserError
    from lakehub.server.jobs.base import JobsError
    from lakehub.server.models.base import Reader
    from lakehub.server.vault import read_or_create

    def owner() -> str:
        from lakehub.server.db import User

        with db.session() as s:
            name = s.scalar(
                select(User.name)
                .where(User.admin.is_(True), User.status == "active")
                .order_by(User.name != settings.admin_user, User.id)
            )
        if name is None:
            raise RuntimeError("no administrator to own the operations data")
        return str(name)

    def prepare() -> None:
        who = owner()
        for make in (
            lambda: directory.create_group(GROUP, "lakehub"),
            lambda: spaces.create(SPACE, who, "lakehub"),
        ):
            try:
                make()
            except UserError as err:
                if err.status != 409:
                    raise
        spaces.grant(SPACE, "read", who, True, group=GROUP)
        try:  # the AI library's anomaly detector on each day, half an hour after its export
            code = Path(__file__).with_name("anomaly_job.py").read_text()
            jobs.create(
                Reader(who),
                {
                    "name": JOB,
                    "code_name": f"{JOB}.py",
                    "code": code,
                    "schedule": "cron",
                    "expr": "30 0 * * *",
                    "timezone": "UTC",
                    "environment": "datascience",
                },
            )
        except JobsError as err:  # there (409), or its environment is not built yet: next time
            if err.status != 409:
                log.warning("the job %s is not made yet: %s", JOB, err)

    def put(key: str, body: bytes) -> None:
        files.put(Reader(owner()), BUCKET, key, io.BytesIO(body))

    def register(name: str, path: str, description: str) -> None:
        try:
            catalog.register(
                name,
                path,
                "parquet",
                owner(),
                partitioning=["date"],
                description=f"{description} See s3://{BUCKET}/DATASHEET.md.",
                tags=["operations", "open-data", LICENCE],
            )
        except UserError as err:
            if err.status != 409:
                raise

    def exists(key: str) -> bool:
        try:
            directory.lake.admin().head_object(Bucket=BUCKET, Key=key)
        except Exception:  # noqa: BLE001 (absent, or the lake is away: exported later)
            return False
        return True

    key = read_or_create(settings.state_dir / "ops-data.key").encode()
    return OpenData(db, store, key, put, prepare, register, exists)
