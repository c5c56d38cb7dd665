"""Quotas: limits in bytes and in objects on a user's own buckets (``<name>-*``) or on a space.

Users write straight to the lake, so the lake enforces quotas: a loop in the control plane
measures every target that has a quota (an S3 listing with the administrator's key: objects, plus
the parts of multipart uploads in progress), and once usage reaches a limit it makes the target
read-only in the lake (:meth:`lakehub.server.lake.base.Lake.set_read_only`). Reads and deletes keep
working there, so deleting brings usage back under the limit and the next pass lifts the block.

The bound on overshoot: writes the lake accepts between the moment a limit is crossed and the
moment the block is in force, that is at most one interval plus one measuring pass plus the time
to apply the block (about 0.3 s), times the rate at which the target is written to.
"""

from __future__ import annotations

import logging
import threading

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from lakehub.server.db import Quota, Space, utcnow
from lakehub.server.identity.users import Directory, UserError, shared_access, space_bucket
from lakehub.server.lake.base import LakeUnavailable
from lakehub.server.schema import Instant
from lakehub.sizes import human

KINDS = ("user", "space")
INTERVAL = 1.0  # seconds between two measuring passes
LARGEST = 2**63 - 1  # what the database holds
log = logging.getLogger("lakehub.server.quotas")


class QuotaView(BaseModel):
    """A quota with its latest measure (its usage and message say it for people)."""

    model_config = ConfigDict(frozen=True)

    kind: str = Field(description="user (the buckets NAME-*) or space (the bucket space-NAME)")
    name: str
    max_bytes: int | None
    max_objects: int | None
    used_bytes: int
    used_objects: int
    measured_at: Instant | None
    blocked: bool = Field(description="True while the lake refuses new writes")
    usage: str = Field(description="What is used of each limit, for people")
    message: str = Field(description="The quota-exceeded sentence while blocked")
    set_by: str
    updated_at: Instant

    @classmethod
    def of(cls, q: Quota) -> QuotaView:
        used = usage(q.used_bytes, q.used_objects, q.max_bytes, q.max_objects)
        return cls(
            kind=q.kind,
            name=q.name,
            max_bytes=q.max_bytes,
            max_objects=q.max_objects,
            used_bytes=q.used_bytes,
            used_objects=q.used_objects,
            measured_at=q.measured_at,
            blocked=q.blocked,
            usage=used,
            message=(
                f"quota exceeded for {q.kind} {q.name}: {used}; delete something or ask an admin"
                if q.blocked
                else ""
            ),
            set_by=q.set_by,
            updated_at=q.updated_at,
        )


def usage(
    used_bytes: int, used_objects: int, max_bytes: int | None, max_objects: int | None
) -> str:
    """``1.2 MiB of 1.0 MiB used, 3 of 1000 objects``."""
    parts = []
    if max_bytes is not None:
        parts.append(f"{human(used_bytes)} of {human(max_bytes)} used")
    if max_objects is not None:
        parts.append(f"{used_objects} of {max_objects} objects")
    return ", ".join(parts)


def covers(kind: str, name: str, bucket: str) -> bool:
    """True if a quota on ``kind`` ``name`` counts ``bucket``."""
    return bucket == space_bucket(name) if kind == "space" else bucket.startswith(f"{name}-")


def over(
    used_bytes: int, used_objects: int, max_bytes: int | None, max_objects: int | None
) -> bool:
    """Usage has reached a limit: no more writes."""
    return (max_bytes is not None and used_bytes >= max_bytes) or (
        max_objects is not None and used_objects >= max_objects
    )


def pattern(kind: str, name: str) -> str:
    """The buckets a quota covers, as the lake contract names them."""
    return space_bucket(name) if kind == "space" else f"{name}-*"


class Quotas:
    def __init__(self, directory: Directory, interval: float = INTERVAL) -> None:
        self.directory = directory
        self.db = directory.db
        self.interval = interval
        self._pass = threading.Lock()  # one measuring pass at a time
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_error = ""

    # admin changes -------------------------------------------------------------------------
    def set(
        self, kind: str, name: str, max_bytes: int | None, max_objects: int | None, actor: str
    ) -> QuotaView:
        """Create or replace a quota; it is measured and enforced when this returns."""
        self._check_kind(kind)
        for label, value in (("max_bytes", max_bytes), ("max_objects", max_objects)):
            if value is not None and (isinstance(value, bool) or not 0 <= value <= LARGEST):
                raise UserError(f"{label} must be a number from 0 to {LARGEST}, not {value!r}")
        if max_bytes is None and max_objects is None:
            raise UserError("give max_bytes, max_objects or both")
        limits = ", ".join(
            f"{label} {shown}"
            for label, value, shown in (
                ("bytes", max_bytes, human(max_bytes or 0)),
                ("objects", max_objects, max_objects),
            )
            if value is not None
        )
        with self.db.session() as s:
            if kind == "user":
                self.directory.get(s, name)  # 404 for an unknown user
            elif s.scalar(select(Space.id).where(Space.name == name)) is None:
                raise UserError(f"no space named {name!r}", 404)
            row = s.scalar(select(Quota).where(Quota.kind == kind, Quota.name == name))
            if row is None:
                row = Quota(kind=kind, name=name)
                s.add(row)
            row.max_bytes, row.max_objects = max_bytes, max_objects
            row.set_by, row.updated_at = actor, utcnow()
            self.directory.record_event(s, actor, "quota.set", f"{kind} {name}", limits)
        self._enforce_now()
        return self.get(kind, name)

    def remove(self, kind: str, name: str, actor: str) -> None:
        """Drop a quota; a block it caused is lifted when this returns."""
        self._check_kind(kind)
        with self.db.session() as s:
            row = s.scalar(select(Quota).where(Quota.kind == kind, Quota.name == name))
            if row is None:
                raise UserError(f"no quota on {kind} {name}", 404)
            s.delete(row)
            self.directory.record_event(s, actor, "quota.remove", f"{kind} {name}")
        self._enforce_now()

    def _enforce_now(self) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.enforce()
        except (BotoCoreError, ClientError, LakeUnavailable) as err:
            raise LakeUnavailable(
                f"the change is recorded but the lake is not answering ({err}); it applies as "
                "soon as the lake is back"
            ) from err

    # reading -------------------------------------------------------------------------------
    def get(self, kind: str, name: str) -> QuotaView:
        with self.db.session() as s:
            row = s.scalar(select(Quota).where(Quota.kind == kind, Quota.name == name))
            if row is None:
                raise UserError(f"no quota on {kind} {name}", 404)
            return QuotaView.of(row)

    def visible(self, viewer: str, admin: bool) -> list[QuotaView]:
        """Every quota for an admin; else the viewer's own and those of spaces they can use."""
        with self.db.session() as s:
            rows = [
                QuotaView.of(q) for q in s.scalars(select(Quota).order_by(Quota.kind, Quota.name))
            ]
            if admin:
                return rows
            spaces = set(shared_access(s).get(viewer, {}))
        return [
            q
            for q in rows
            if (q.kind, q.name) == ("user", viewer)
            or (q.kind == "space" and space_bucket(q.name) in spaces)
        ]

    # enforcing -----------------------------------------------------------------------------
    def enforce(self) -> None:
        """One pass: measure every quota, make the lake refuse writes where usage reached a
        limit, then record usage and blocks (so a block read from here is already in force)."""
        with self._pass:
            with self.db.session() as s:
                limits = {
                    (q.kind, q.name): (q.max_bytes, q.max_objects) for q in s.scalars(select(Quota))
                }
            measured = {}
            if limits:
                lake = self.directory.lake
                buckets = lake.buckets()
                for kind, name in limits:
                    measured[(kind, name)] = lake.usage(
                        [b for b in buckets if covers(kind, name, b)]
                    )
            blocked = {key for key, used in measured.items() if over(*used, *limits[key])}
            self.directory.lake.set_read_only({pattern(*key) for key in blocked})
            with self.db.session() as s:
                for row in s.scalars(select(Quota)):
                    key = (row.kind, row.name)
                    if key not in measured:  # set meanwhile: its own pass follows
                        continue
                    row.used_bytes, row.used_objects = measured[key]
                    row.measured_at = utcnow()
                    if (key in blocked) != row.blocked:
                        row.blocked = key in blocked
                        self.directory.record_event(
                            s,
                            "lakehub",
                            "quota.block" if row.blocked else "quota.unblock",
                            f"{row.kind} {row.name}",
                            QuotaView.of(row).usage,
                        )

    # the loop ------------------------------------------------------------------------------
    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="lakehub-quotas", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def poke(self) -> None:
        """Measure now rather than at the next tick (after a write LakeHub itself made)."""
        self._wake.set()

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                self.enforce()
                failures, self._last_error = 0, ""
            except Exception as err:  # the lake may be starting or restarting: try again
                failures += 1
                if failures >= 5 and str(err) != self._last_error:  # say so once it lasts
                    log.warning("quota pass failed %d times in a row: %s", failures, err)
                    self._last_error = str(err)
            self._wake.wait(self.interval)
            self._wake.clear()

    @staticmethod
    def _check_kind(kind: str) -> None:
        if kind not in KINDS:
            raise UserError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
