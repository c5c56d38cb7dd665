"""Alert rules evaluated by LakeHub against the store, with their history, silences and notices.

Every ``interval`` seconds each rule's expression is queried at that instant; each series it
answers is a condition, named by the rule and the series' labels (``__name__``, ``job`` and
``instance`` left out: a restarted component keeps its alerts). A condition that holds for the
rule's ``for`` seconds fires: a row in ``ops_alerts`` and a notice; one that is no longer
answered resolves: the row is closed and a second notice goes out. Rows are never deleted.

- Pending conditions live in memory (a restarted control plane waits ``for`` again); firing
  ones are the open rows, so a restart neither fires an alert twice nor forgets one.
- A store that does not answer resolves nothing: its own alert, ``MetricsStoreDown``, fires
  once it has not answered for a minute (and two evaluations), and resolves when it answers.
- A silence (a rule or every rule, label equalities, a reason, an end) keeps the notices of the
  alerts it matches from going out, for alerts that fire during it and those open when it is
  made; the alert's row names the silence, so the history says who silenced it and why. Users
  may silence only their own alerts (the label ``user`` is theirs).
- Nothing is evaluated while the hub starts or stops: its components come and go then.
- Notices go out from a thread of their own (:class:`Notifier`): a slow webhook never delays an
  evaluation.
"""

from __future__ import annotations

import hashlib
import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml
from sqlalchemy import or_, select

from lakehub.server.db import Database
from lakehub.server.ops.base import MetricsStore, OpsError
from lakehub.server.ops.tables import OpsAlert, OpsSilence

log = logging.getLogger("lakehub.server.ops")
RULES = Path(__file__).with_name("rules.yaml")
HIDDEN = ("__name__", "job", "instance")
STORE_DOWN = "MetricsStoreDown"
STORE_GRACE_S = 60.0  # the store starts after the control plane, and may restart
SEVERITIES = ("critical", "warning", "info")
WEBHOOK_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Rule:
    name: str
    expr: str
    for_s: int
    severity: str
    summary: str


STORE_DOWN_RULE = Rule(STORE_DOWN, "", 0, "critical", "the metrics store does not answer")


def load_rules(path: Path = RULES) -> list[Rule]:
    """The rules of ``path``; a rule without a name, expression or a known severity is a
    ValueError naming it."""
    rules = []
    for i, raw in enumerate(yaml.safe_load(path.read_text()) or []):
        name = str(raw.get("name") or "")
        if not name or not raw.get("expr") or raw.get("severity") not in SEVERITIES:
            raise ValueError(f"{path.name}: rule {name or i + 1} needs name, expr and a severity")
        rules.append(
            Rule(name, str(raw["expr"]), int(raw.get("for", 0)), raw["severity"], raw["summary"])
        )
    return rules


def fingerprint(rule: str, labels: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps([rule, sorted(labels.items())]).encode()).hexdigest()


def summary(template: str, labels: dict[str, str], value: float) -> str:
    class Missing(dict[str, Any]):
        def __missing__(self, key: str) -> str:
            return "?"

    try:
        return template.format_map(Missing(labels, value=value))
    except (ValueError, TypeError):
        return template


def view(a: OpsAlert, silence: OpsSilence | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": a.id,
        "rule": a.rule,
        "labels": json.loads(a.labels),
        "severity": a.severity,
        "summary": a.summary,
        "user": a.user or None,
        "value": a.value,
        "state": "firing" if a.resolved_ms is None else "resolved",
        "fired_ms": a.fired_ms,
        "resolved_ms": a.resolved_ms,
        "silenced": None,
    }
    if silence is not None:
        out["silenced"] = {"id": silence.id, "by": silence.created_by, "reason": silence.reason}
    return out


def silence_view(s: OpsSilence, now_ms: int) -> dict[str, Any]:
    return {
        "id": s.id,
        "rule": s.rule or None,
        "matchers": json.loads(s.matchers),
        "reason": s.reason,
        "created_by": s.created_by,
        "created_ms": s.created_ms,
        "ends_ms": s.ends_ms,
        "ended_by": s.ended_by or None,
        "active": not s.ended_by and s.ends_ms > now_ms,
    }


def matches(s: OpsSilence, rule: str, labels: dict[str, str]) -> bool:
    if s.rule and s.rule != rule:
        return False
    return all(labels.get(k) == v for k, v in json.loads(s.matchers).items())


class Notifier:
    """Sends each alert change to the webhooks (Alertmanager's webhook format, version 4) and
    the mail addresses, from a thread of its own; a failed webhook is tried three times."""

    def __init__(
        self,
        webhooks: list[str],
        emails: list[str],
        send_mail: Callable[[str, str, str], None] | None,
        front_url: str = "",
    ) -> None:
        self.webhooks, self.emails, self.send_mail = webhooks, emails, send_mail
        self.front_url = front_url
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self.webhooks or (self.emails and self.send_mail):
            self._thread = threading.Thread(target=self._run, name="alert-notices", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(30)

    def send(self, alert: dict[str, Any]) -> bool:
        """Queue a notice; False when there is nowhere to send it."""
        if self._thread is None:
            return False
        self._queue.put(alert)
        return True

    def payload(self, a: dict[str, Any]) -> dict[str, Any]:
        iso = lambda ms: (  # noqa: E731
            time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms / 1000)) + f".{ms % 1000:03d}Z"
        )
        status = a["state"]
        item = {
            "status": status,
            "labels": {"alertname": a["rule"], "severity": a["severity"], **a["labels"]},
            "annotations": {"summary": a["summary"]},
            "startsAt": iso(a["fired_ms"]),
            "endsAt": iso(a["resolved_ms"]) if a["resolved_ms"] else "0001-01-01T00:00:00Z",
            "generatorURL": f"{self.front_url}/services/lakehub/alerts",
            "fingerprint": fingerprint(a["rule"], a["labels"])[:16],
        }
        return {
            "version": "4",
            "receiver": "lakehub",
            "status": status,
            "groupKey": f"{a['rule']}:{item['fingerprint']}",
            "groupLabels": {"alertname": a["rule"]},
            "commonLabels": item["labels"],
            "commonAnnotations": item["annotations"],
            "externalURL": f"{self.front_url}/services/lakehub/",
            "alerts": [item],
        }

    def _run(self) -> None:
        with httpx.Client(timeout=WEBHOOK_TIMEOUT_S) as http:
            while (a := self._queue.get()) is not None:
                body = self.payload(a)
                for url in self.webhooks:
                    for attempt in range(3):
                        try:
                            http.post(url, json=body).raise_for_status()
                            break
                        except httpx.HTTPError as err:
                            log.warning("alert webhook %d failed: %s", attempt + 1, type(err))
                            time.sleep(2**attempt)
                subject = f"[LakeHub {a['state']}] {a['rule']}: {a['summary']}"
                for to in self.emails if self.send_mail else []:
                    try:
                        self.send_mail(to, subject, json.dumps(body, indent=2))  # type: ignore[misc]
                    except OSError as err:
                        log.warning("alert mail to %s failed: %s", to, err)


class Alerts:
    def __init__(
        self,
        db: Database,
        store: MetricsStore,
        notifier: Notifier,
        interval: float,
        rules: list[Rule] | None = None,
        clock: Callable[[], float] = time.time,
        ready: Callable[[], bool] = lambda: True,
    ) -> None:
        self.db, self.store, self.notifier, self.interval = db, store, notifier, interval
        self.rules = load_rules() if rules is None else rules
        self.clock, self.ready = clock, ready
        self.pending: dict[str, int] = {}  # fingerprint -> first seen (ms)
        self.store_failing_since = 0.0  # 0: it answered last time
        self.store_failures = 0
        self.last_error = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # the loop ---------------------------------------------------------------------------------
    def start(self) -> None:
        self.notifier.start()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="alerts", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)
        self.notifier.stop()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.tick()
            except Exception:
                log.exception("alert evaluation failed")

    def tick(self) -> None:
        """One evaluation of every rule; none while the hub starts or stops (components come
        and go then, by design)."""
        if not self.ready():
            return
        now = self.clock()
        now_ms = int(now * 1000)
        seen: dict[str, tuple[Rule, dict[str, str], float]] = {}
        unknown: set[str] = set()  # rules the store refused this time: their alerts stay as are
        try:
            for rule in self.rules:
                try:
                    answer = self.store.query(rule.expr, now)
                except OpsError as err:
                    if err.status == 503:
                        raise
                    log.error("alert rule %s refused by the store: %s", rule.name, err)
                    unknown.add(rule.name)
                    continue
                for series in answer:
                    labels = {k: v for k, v in series.labels.items() if k not in HIDDEN}
                    seen[fingerprint(rule.name, labels)] = (rule, labels, series.last)
        except OpsError:
            self.store_failures += 1
            self.store_failing_since = self.store_failing_since or now
            if self.store_failures >= 2 and now - self.store_failing_since >= STORE_GRACE_S:
                labels = {"component": "metrics"}
                down = (STORE_DOWN_RULE, labels, 1.0)
                self._apply({fingerprint(STORE_DOWN, labels): down}, now_ms, self._names())
            return
        self.store_failures, self.store_failing_since = 0, 0.0
        self._apply(seen, now_ms, unknown)

    def _names(self) -> set[str]:
        return {r.name for r in self.rules}

    def _apply(
        self, seen: dict[str, tuple[Rule, dict[str, str], float]], now_ms: int, unknown: set[str]
    ) -> None:
        """Fire what held long enough; resolve what is gone, but for the rules in ``unknown``."""
        notices = []
        with self.db.session() as s:
            open_rows = {
                a.fingerprint: a
                for a in s.scalars(select(OpsAlert).where(OpsAlert.resolved_ms.is_(None)))
                if a.rule not in unknown
            }
            silences = self._active_silences(s, now_ms)
            for fp, (rule, labels, value) in seen.items():
                if fp in open_rows:
                    open_rows[fp].value = value
                    continue
                since = self.pending.setdefault(fp, now_ms)
                if now_ms - since < rule.for_s * 1000:
                    continue
                silence = next((x for x in silences if matches(x, rule.name, labels)), None)
                row = OpsAlert(
                    rule=rule.name,
                    fingerprint=fp,
                    labels=json.dumps(labels, sort_keys=True),
                    severity=rule.severity,
                    summary=summary(rule.summary, labels, value)[:1000],
                    user=labels.get("user", "")[:64],
                    value=value,
                    fired_ms=now_ms,
                    silence_id=silence.id if silence else None,
                    notified=0,
                )
                s.add(row)
                s.flush()
                self.pending.pop(fp, None)
                if silence is None:
                    notices.append(row)
            for fp in [fp for fp in self.pending if fp not in seen]:
                del self.pending[fp]
            for fp, row in open_rows.items():
                if fp in seen:
                    continue
                row.resolved_ms = now_ms
                if row.silence_id is None and not any(
                    matches(x, row.rule, json.loads(row.labels)) for x in silences
                ):
                    notices.append(row)
            for row in notices:
                if self.notifier.send(view(row)):
                    row.notified += 1

    # reading ----------------------------------------------------------------------------------
    def history(
        self, viewer: str, admin: bool, firing_only: bool = False, limit: int = 200
    ) -> list[dict[str, Any]]:
        """Newest first: every alert for an administrator, a user's own for a user."""
        q = select(OpsAlert, OpsSilence).outerjoin(OpsSilence, OpsSilence.id == OpsAlert.silence_id)
        if not admin:
            q = q.where(OpsAlert.user == viewer)
        if firing_only:
            q = q.where(OpsAlert.resolved_ms.is_(None))
        with self.db.session() as s:
            rows = s.execute(q.order_by(OpsAlert.id.desc()).limit(limit)).tuples().all()
            return [view(a, sil) for a, sil in rows]

    # silences ---------------------------------------------------------------------------------
    @staticmethod
    def _active_silences(s: Any, now_ms: int) -> list[OpsSilence]:
        return list(
            s.scalars(
                select(OpsSilence).where(OpsSilence.ends_ms > now_ms, OpsSilence.ended_by == "")
            )
        )

    def silence(
        self,
        actor: str,
        admin: bool,
        rule: str,
        matchers: dict[str, str],
        reason: str,
        seconds: int,
    ) -> dict[str, Any]:
        """A silence from now for ``seconds``; it also covers the alerts open now that it
        matches. A user's silence covers their own alerts only."""
        known = self._names() | {STORE_DOWN}
        if rule and rule not in known:
            raise OpsError(f"no alert rule {rule!r}; known: {', '.join(sorted(known))}", 404)
        if not reason.strip():
            raise OpsError("say why: a silence needs a reason")
        if not 60 <= seconds <= 90 * 86400:
            raise OpsError("a silence lasts from a minute to 90 days")
        if not admin:
            if matchers.get("user", actor) != actor:
                raise OpsError("you may silence only your own alerts", 403)
            matchers = {**matchers, "user": actor}
        now_ms = int(self.clock() * 1000)
        with self.db.session() as s:
            row = OpsSilence(
                rule=rule,
                matchers=json.dumps({str(k): str(v) for k, v in matchers.items()}, sort_keys=True),
                reason=reason.strip()[:1000],
                created_by=actor,
                created_ms=now_ms,
                ends_ms=now_ms + seconds * 1000,
                ended_by="",
            )
            s.add(row)
            s.flush()
            for a in s.scalars(
                select(OpsAlert).where(
                    OpsAlert.resolved_ms.is_(None), OpsAlert.silence_id.is_(None)
                )
            ):
                if matches(row, a.rule, json.loads(a.labels)):
                    a.silence_id = row.id
            return silence_view(row, now_ms)

    def silences(self, viewer: str, admin: bool) -> list[dict[str, Any]]:
        now_ms = int(self.clock() * 1000)
        with self.db.session() as s:
            q = select(OpsSilence).order_by(OpsSilence.id.desc()).limit(200)
            if not admin:
                q = q.where(
                    or_(OpsSilence.created_by == viewer, OpsSilence.matchers.contains(viewer))
                )
            rows = [silence_view(x, now_ms) for x in s.scalars(q)]
        return [r for r in rows if admin or r["matchers"].get("user") == viewer]

    def end_silence(self, actor: str, admin: bool, silence_id: int) -> dict[str, Any]:
        now_ms = int(self.clock() * 1000)
        with self.db.session() as s:
            row = s.get(OpsSilence, silence_id)
            if row is None or not (admin or json.loads(row.matchers).get("user") == actor):
                raise OpsError(f"no silence {silence_id}", 404)
            if not row.ended_by and row.ends_ms > now_ms:
                row.ended_by, row.ends_ms = actor, now_ms
            return silence_view(row, now_ms)
