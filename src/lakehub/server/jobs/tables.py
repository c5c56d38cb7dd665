"""The area's metadata, in LakeHub's database (migrations 0012 to 0014, 0016, 0017).

A job belongs to its owner alone. Each planned run is a row, written before the run starts and
unique per (job, planned time): a restarted scheduler or a clock change finds it there and never
starts it twice. Runs by hand are planned at the instant they are asked for. Times are
milliseconds since the epoch.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from lakehub.server.db import Base


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (UniqueConstraint("owner", "name"), {"sqlite_autoincrement": True})
    id: Mapped[int] = mapped_column(primary_key=True)
    owner: Mapped[str] = mapped_column(String(64), index=True)
    name: Mapped[str] = mapped_column(String(63))
    kind: Mapped[str] = mapped_column(String(16))  # notebook | script
    code_name: Mapped[str] = mapped_column(String(255))  # the file's name, as uploaded
    code_version: Mapped[int] = mapped_column(Integer, default=1)  # bumped by each upload
    parameters: Mapped[str] = mapped_column(Text, default="{}")  # JSON object
    environment: Mapped[str] = mapped_column(String(64))
    size: Mapped[str] = mapped_column(String(64))
    schedule: Mapped[str] = mapped_column(String(16))  # cron | interval | once | manual
    expr: Mapped[str] = mapped_column(String(128), default="")
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    start_ms: Mapped[int] = mapped_column(BigInteger, default=0)
    missed: Mapped[str] = mapped_column(String(16), default="latest")  # skip | latest | all
    missed_cap: Mapped[int] = mapped_column(Integer, default=10)
    concurrency: Mapped[str] = mapped_column(String(16), default="forbid")  # allow|forbid|replace
    retries: Mapped[int] = mapped_column(Integer, default=0)  # failures of the job's own code
    backoff_s: Mapped[int] = mapped_column(Integer, default=30)  # before the first retry
    timeout_s: Mapped[int] = mapped_column(Integer, default=3600)
    paused: Mapped[bool] = mapped_column(default=False)
    webhook: Mapped[str] = mapped_column(Text, default="")  # its URL, encrypted (the vault's)
    deadline: Mapped[str] = mapped_column(String(5), default="")  # "07:00" in its time zone
    deadline_checked_ms: Mapped[int] = mapped_column(BigInteger, default=0)
    stale_told: Mapped[bool] = mapped_column(default=False)  # no success for 2 intervals, told
    after: Mapped[str] = mapped_column(Text, default="[]")  # JSON: the jobs it runs after
    backfill_parallelism: Mapped[int] = mapped_column(Integer, default=2)
    keep_runs: Mapped[int] = mapped_column(Integer, default=200)  # ended runs kept, newest
    email: Mapped[str] = mapped_column(String(254), default="")  # told by mail, if set
    cluster: Mapped[str] = mapped_column(String(16), default="")  # "dask": one for each run
    cluster_workers: Mapped[int] = mapped_column(Integer, default=2)
    planned_ms: Mapped[int] = mapped_column(BigInteger)  # planned times up to here are rows
    created_ms: Mapped[int] = mapped_column(BigInteger)
    updated_ms: Mapped[int] = mapped_column(BigInteger)


class JobRun(Base):
    """One planned run and its attempts (retries are attempts of the same run)."""

    __tablename__ = "job_runs"
    __table_args__ = (UniqueConstraint("job_id", "planned_ms"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    planned_ms: Mapped[int] = mapped_column(BigInteger)
    trigger: Mapped[str] = mapped_column(String(16))  # schedule | manual | catch-up
    # planned -> running -> succeeded | failed; waiting (a retry's backoff); missed (never
    # started: the job's missed policy); skipped (concurrency: forbid); cancelled (replaced or
    # by hand); lost (its process vanished, retries exhausted)
    state: Mapped[str] = mapped_column(String(16), default="planned", index=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    infra_failures: Mapped[int] = mapped_column(Integer, default=0)
    code_version: Mapped[int] = mapped_column(Integer)
    parameters: Mapped[str] = mapped_column(Text, default="{}")
    environment_build: Mapped[str] = mapped_column(String(64), default="")
    pid: Mapped[int | None] = mapped_column(Integer)
    exit_code: Mapped[int | None] = mapped_column(Integer)
    retry_ms: Mapped[int | None] = mapped_column(BigInteger)  # when a waiting run starts again
    started_ms: Mapped[int | None] = mapped_column(BigInteger)
    ended_ms: Mapped[int | None] = mapped_column(BigInteger)
    heartbeat_ms: Mapped[int | None] = mapped_column(BigInteger)


class JobNotice(Base):
    """Something its owner must hear of: a run failed, was lost or missed. Shown in the portal
    until dismissed, and sent to the job's webhook (retried until it answers 2xx, or given up
    after ``notices.ATTEMPTS``)."""

    __tablename__ = "job_notices"
    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    run_id: Mapped[int | None] = mapped_column(Integer)
    event: Mapped[str] = mapped_column(String(16))  # failed | lost | missed
    message: Mapped[str] = mapped_column(Text)
    created_ms: Mapped[int] = mapped_column(BigInteger)
    dismissed: Mapped[bool] = mapped_column(default=False)
    webhook: Mapped[str] = mapped_column(String(16), default="none")  # none|pending|sent|failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_ms: Mapped[int | None] = mapped_column(BigInteger)
    error: Mapped[str] = mapped_column(Text, default="")
    email: Mapped[str] = mapped_column(String(16), default="none")  # none|pending|sent|failed
    email_attempts: Mapped[int] = mapped_column(Integer, default=0)
