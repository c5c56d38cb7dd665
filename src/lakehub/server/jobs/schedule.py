"""When a job runs: a cron expression in a time zone, an interval, once, or only by hand; and
which planned times are due between two instants.

Rules: cron follows its time zone's wall clock through clock changes (cronsim: a time in the
repeated autumn hour fires once, a time in the skipped spring hour fires at the jump); an
interval counts from the job's start, so its times do not drift with the scheduler's; times are
whole milliseconds since the epoch, UTC, as the tables keep them. Pure: no clock of its own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from lakehub.server.jobs.base import JobsError
from lakehub.server.schema import to_ms

KINDS = ("cron", "interval", "once", "manual")
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
EVERY_RE = re.compile(r"^(\d+)([smhd])$")
DEADLINE_RE = re.compile(r"^(\d\d):(\d\d)$")
MIN_INTERVAL_S = 10  # the scheduler looks every second; shorter would be a loop, not a schedule
SCAN_LIMIT = 100_000  # planned times looked at in one pass (a minutely job down for ten weeks)


@dataclass(frozen=True)
class Schedule:
    kind: str  # cron | interval | once | manual
    expr: str = ""  # cron: "30 3 * * 1-5"; interval: "15m"; once: an ISO time with its offset
    timezone: str = "UTC"
    start_ms: int = 0  # interval: the first time; once: the time

    def describe(self) -> str:
        if self.kind == "cron":
            return f"cron {self.expr} ({self.timezone})"
        if self.kind == "interval":
            return f"every {self.expr}"
        if self.kind == "once":
            return f"once at {datetime.fromtimestamp(self.start_ms / 1000, UTC):%Y-%m-%d %H:%M}Z"
        return "by hand"


def parse(kind: str, expr: str, timezone: str, now_ms: int) -> Schedule:
    """A schedule from what a user typed (refused with a readable reason); an interval's first
    time is one interval after ``now_ms``."""
    expr = expr.strip()
    if kind not in KINDS:
        raise JobsError(f"schedule must be one of {', '.join(KINDS)}, not {kind!r}")
    try:
        zone = ZoneInfo(timezone or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        raise JobsError(f"unknown time zone {timezone!r} (an IANA name: Europe/Paris)") from None
    if kind == "manual":
        return Schedule("manual")
    if kind == "cron":
        from cronsim import CronSim, CronSimError

        try:
            CronSim(expr, datetime.now(zone))
        except (CronSimError, ValueError) as err:
            raise JobsError(f"bad cron expression {expr!r}: {err}") from None
        return Schedule("cron", expr, zone.key)
    if kind == "interval":
        m = EVERY_RE.match(expr)
        seconds = int(m.group(1)) * UNITS[m.group(2)] if m else 0
        if seconds < MIN_INTERVAL_S:
            raise JobsError(
                f"bad interval {expr!r}: a number and s, m, h or d, at least {MIN_INTERVAL_S}s"
            )
        return Schedule("interval", expr, zone.key, now_ms + seconds * 1000)
    try:
        at = datetime.fromisoformat(expr)
    except ValueError:
        raise JobsError(f"bad time {expr!r}: ISO 8601, such as 2027-01-04T07:00") from None
    if at.tzinfo is None:
        at = at.replace(tzinfo=zone)
    return Schedule("once", expr, zone.key, to_ms(at))


def interval_ms(s: Schedule) -> int:
    m = EVERY_RE.match(s.expr)
    assert m is not None
    return int(m.group(1)) * UNITS[m.group(2)] * 1000


def due(s: Schedule, after_ms: int, until_ms: int) -> list[int]:
    """The planned times t with after_ms < t <= until_ms, oldest first (at most SCAN_LIMIT: the
    newest are kept)."""
    if s.kind == "manual" or until_ms <= after_ms:
        return []
    if s.kind == "once":
        return [s.start_ms] if after_ms < s.start_ms <= until_ms else []
    if s.kind == "interval":
        step = interval_ms(s)
        if until_ms < s.start_ms:
            return []
        first = (
            s.start_ms
            if after_ms < s.start_ms
            else after_ms + step - (after_ms - s.start_ms) % step
        )
        last = s.start_ms + (until_ms - s.start_ms) // step * step
        first = max(first, last - (SCAN_LIMIT - 1) * step)
        return list(range(first, last + 1, step))
    from cronsim import CronSim

    zone = ZoneInfo(s.timezone)
    times: list[int] = []
    for at in CronSim(s.expr, datetime.fromtimestamp(after_ms / 1000, zone)):
        ms = to_ms(at)
        if ms > until_ms:
            break
        if ms > after_ms:  # cronsim starts at the next whole minute after its start
            times.append(ms)
            if len(times) > SCAN_LIMIT:
                del times[0]
    return times


def next_time(s: Schedule, after_ms: int) -> int | None:
    """The first planned time after ``after_ms`` (None: by hand, or a time gone by)."""
    if s.kind == "manual":
        return None
    if s.kind == "once":
        return s.start_ms if s.start_ms > after_ms else None
    if s.kind == "interval":
        step = interval_ms(s)
        if after_ms < s.start_ms:
            return s.start_ms
        return after_ms + step - (after_ms - s.start_ms) % step
    from cronsim import CronSim

    at = next(iter(CronSim(s.expr, datetime.fromtimestamp(after_ms / 1000, ZoneInfo(s.timezone)))))
    return to_ms(at)


def step_ms(s: Schedule, now_ms: int) -> int | None:
    """The time between two planned times around ``now_ms`` (None: by hand or once)."""
    if s.kind == "interval":
        return interval_ms(s)
    if s.kind != "cron":
        return None
    first = next_time(s, now_ms)
    second = next_time(s, first) if first is not None else None
    return None if first is None or second is None else second - first


def valid_deadline(value: str) -> str:
    m = DEADLINE_RE.match(value)
    if not m or int(m.group(1)) > 23 or int(m.group(2)) > 59:
        raise JobsError(f"bad deadline {value!r}: a time of day, HH:MM (07:00)")
    return value


def last_deadline(deadline: str, timezone: str, now_ms: int) -> int:
    """The latest instant at or before ``now_ms`` when the wall clock of ``timezone`` showed
    ``deadline`` (HH:MM): today's if passed, else yesterday's."""
    zone = ZoneInfo(timezone)
    now = datetime.fromtimestamp(now_ms / 1000, zone)
    hour, minute = (int(x) for x in deadline.split(":"))
    at = now.replace(hour=hour, minute=minute, second=0, microsecond=0)
    if at > now:
        at = (now - timedelta(days=1)).replace(hour=hour, minute=minute, second=0, microsecond=0)
    return to_ms(at)
