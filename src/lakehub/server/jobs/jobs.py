"""Jobs as their owners see them: made from a notebook or a script uploaded with them, changed,
paused, run by hand, their runs and outputs; a job is its owner's alone (anyone else, as if it
did not exist). The code of each upload is kept in the owner's lake (``jobs/<name>/code/<n>/``),
each run's output notebook and log beside it (``jobs/<name>/runs/<id>/``), in their quota."""

from __future__ import annotations

import json
import re
from io import BytesIO
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from lakehub.server.identity.users import home_bucket
from lakehub.server.jobs import pipeline
from lakehub.server.jobs import schedule as sched
from lakehub.server.jobs.base import JobsError
from lakehub.server.jobs.scheduler import Scheduler, code_key, run_prefix, schedule_of
from lakehub.server.jobs.tables import Job, JobRun
from lakehub.server.models.base import ModelsError, Reader
from lakehub.server.schema import Instant, from_ms, from_ms_or_none

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
CODE_NAME_RE = re.compile(r"^[\w.\- ]{1,200}\.(ipynb|py)$")
MAX_CODE = 20 * 2**20
CHOICES = {
    "missed": ("skip", "latest", "all"),
    "concurrency": ("allow", "forbid", "replace"),
    "cluster": ("", "dask"),
}
LIMITS = {"missed_cap": (0, 1000), "retries": (0, 20), "backoff_s": (1, 86400)}
LIMITS["timeout_s"] = (10, 7 * 86400)
LIMITS["backfill_parallelism"] = (1, 16)
LIMITS["keep_runs"] = (1, 10_000)
LIMITS["cluster_workers"] = (1, 16)
EMAIL_RE = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")
OUTPUTS = ("output.ipynb", "log.txt")


class RunView(BaseModel):
    id: int
    planned_at: Instant
    trigger: str = Field(description="schedule, catch-up (after downtime) or manual")
    state: str = Field(
        description="planned, running, waiting (to retry), succeeded, failed, lost, missed, "
        "skipped or cancelled"
    )
    reason: str
    attempt: int
    exit_code: int | None
    parameters: dict[str, Any]
    code_version: int
    environment_build: str = Field(description="the environment's build it ran in")
    started_at: Instant | None
    ended_at: Instant | None
    heartbeat_at: Instant | None


class JobView(BaseModel):
    name: str
    owner: str
    kind: str = Field(description="notebook or script")
    code_name: str
    code_version: int
    parameters: dict[str, Any]
    environment: str
    size: str
    schedule: str = Field(description="cron, interval, once or manual")
    expr: str
    timezone: str
    describe: str
    next_runs: list[Instant] = Field(description="the next planned times (up to five)")
    missed: str
    missed_cap: int
    concurrency: str
    retries: int
    backoff_s: int
    timeout_s: int
    paused: bool
    webhook: bool = Field(description="whether it has a webhook (its URL is never shown)")
    deadline: str = Field(description="HH:MM in its time zone: told when no run succeeded by then")
    email: str = Field(description="where its notices are mailed ('': nowhere)")
    after: list[str] = Field(description="the jobs it runs after (a step of a pipeline)")
    then: list[str] = Field(description="the jobs that run after it")
    backfill_parallelism: int = Field(description="its backfill runs at once, at most")
    keep_runs: int = Field(description="its ended runs kept (newest), with their outputs")
    cluster: str = Field(description="'dask': a cluster of its own for each run ('': none)")
    cluster_workers: int
    last_run: RunView | None
    created_at: Instant
    updated_at: Instant


def run_view(r: JobRun) -> RunView:
    return RunView(
        id=r.id,
        planned_at=from_ms(r.planned_ms),
        trigger=r.trigger,
        state=r.state,
        reason=r.reason,
        attempt=r.attempt,
        exit_code=r.exit_code,
        parameters=json.loads(r.parameters),
        code_version=r.code_version,
        environment_build=r.environment_build,
        started_at=from_ms_or_none(r.started_ms),
        ended_at=from_ms_or_none(r.ended_ms),
        heartbeat_at=from_ms_or_none(r.heartbeat_ms),
    )


class Jobs:
    def __init__(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler
        self.db, self.files, self.policies = scheduler.db, scheduler.files, scheduler.policies

    # reading ----------------------------------------------------------------------------------
    def _job(self, s: Session, who: Reader, name: str) -> Job:
        job = s.scalar(select(Job).where(Job.owner == who.name, Job.name == name))
        if job is None:
            raise JobsError(f"job {name!r} does not exist", 404)
        return job

    def _view(self, s: Session, job: Job) -> JobView:
        last = s.scalar(
            select(JobRun).where(JobRun.job_id == job.id).order_by(JobRun.planned_ms.desc())
        )
        nexts: list[int] = []
        at: int | None = self.scheduler.clock.now_ms()
        while not job.paused and at is not None and len(nexts) < 5:
            at = sched.next_time(schedule_of(job), at)
            if at is not None:
                nexts.append(at)
        return JobView(
            name=job.name,
            owner=job.owner,
            kind=job.kind,
            code_name=job.code_name,
            code_version=job.code_version,
            parameters=json.loads(job.parameters),
            environment=job.environment,
            size=job.size,
            schedule=job.schedule,
            expr=job.expr,
            timezone=job.timezone,
            describe=schedule_of(job).describe(),
            next_runs=[from_ms(t) for t in nexts],
            missed=job.missed,
            missed_cap=job.missed_cap,
            concurrency=job.concurrency,
            retries=job.retries,
            backoff_s=job.backoff_s,
            timeout_s=job.timeout_s,
            paused=job.paused,
            webhook=bool(job.webhook),
            deadline=job.deadline,
            email=job.email,
            after=pipeline.upstream(job),
            then=sorted(j.name for j in pipeline.dependents(s, job)),
            backfill_parallelism=job.backfill_parallelism,
            keep_runs=job.keep_runs,
            cluster=job.cluster,
            cluster_workers=job.cluster_workers,
            last_run=run_view(last) if last else None,
            created_at=from_ms(job.created_ms),
            updated_at=from_ms(job.updated_ms),
        )

    def owned(self, who: Reader) -> list[JobView]:
        with self.db.session() as s:
            rows = s.scalars(select(Job).where(Job.owner == who.name).order_by(Job.name)).all()
            return [self._view(s, j) for j in rows]

    def get(self, who: Reader, name: str) -> JobView:
        with self.db.session() as s:
            return self._view(s, self._job(s, who, name))

    def runs(self, who: Reader, name: str, limit: int = 50) -> list[RunView]:
        with self.db.session() as s:
            job = self._job(s, who, name)
            rows = s.scalars(
                select(JobRun)
                .where(JobRun.job_id == job.id)
                .order_by(JobRun.planned_ms.desc(), JobRun.id.desc())
                .limit(max(1, min(limit, 1000)))
            ).all()
            return [run_view(r) for r in rows]

    def output(self, who: Reader, name: str, run_id: int, file: str) -> bytes:
        """A run's ``output.ipynb`` or ``log.txt`` (of its latest attempt), from the lake."""
        if file not in OUTPUTS:
            raise JobsError(f"a run keeps {' and '.join(OUTPUTS)}, not {file!r}", 404)
        with self.db.session() as s:
            job = self._job(s, who, name)
            run = s.get(JobRun, run_id)
            if run is None or run.job_id != job.id:
                raise JobsError(f"job {name!r} has no run {run_id}", 404)
            key = run_prefix(job, run.id) + file
        try:
            return b"".join(self.files.get(who, home_bucket(who.name), key))
        except ModelsError:
            raise JobsError(f"run {run_id} has no {file} (yet)", 404) from None

    # changing ---------------------------------------------------------------------------------
    def create(self, who: Reader, spec: dict[str, Any]) -> JobView:
        """``spec``: name, code_name, code (text), and what :meth:`_apply` takes."""
        name = str(spec.get("name") or "")
        if not NAME_RE.match(name):
            raise JobsError(
                f"bad job name {name!r}: lowercase letters, digits and dashes, at most 63"
            )
        if "code" not in spec or "code_name" not in spec:
            raise JobsError("a job needs its code: code_name (a .ipynb or .py file) and code")
        now = self.scheduler.clock.now_ms()
        with self.db.session() as s:
            if s.scalar(select(Job.id).where(Job.owner == who.name, Job.name == name)):
                raise JobsError(f"you have a job named {name!r} already", 409)
            choices = self.policies.choices(who.name, who.admin)
            job = Job(
                owner=who.name,
                name=name,
                code_version=0,
                parameters="{}",
                environment=choices.default_environment or "",
                size=choices.default_size or "",
                schedule="manual",
                expr="",
                timezone="UTC",
                start_ms=0,
                missed="latest",
                missed_cap=10,
                concurrency="forbid",
                retries=0,
                backoff_s=30,
                timeout_s=3600,
                paused=False,
                webhook="",
                deadline="",
                email="",
                after="[]",
                backfill_parallelism=2,
                keep_runs=200,
                cluster="",
                cluster_workers=2,
                deadline_checked_ms=now,
                stale_told=False,
                planned_ms=now,
                created_ms=now,
                updated_ms=now,
            )
            self._apply(s, who, job, {"schedule": "manual", **spec}, now)
            s.add(job)
            s.flush()
            return self._view(s, job)

    def update(self, who: Reader, name: str, changes: dict[str, Any]) -> JobView:
        now = self.scheduler.clock.now_ms()
        with self.db.session() as s:
            job = self._job(s, who, name)
            was_paused = job.paused
            self._apply(s, who, job, changes, now)
            if was_paused and not job.paused:
                job.planned_ms = now  # what fell in the pause is not run now
            job.updated_ms = now
            return self._view(s, job)

    def delete(self, who: Reader, name: str) -> None:
        with self.db.session() as s:
            then = pipeline.dependents(s, self._job(s, who, name))
            if then:
                names = ", ".join(j.name for j in then)
                raise JobsError(f"{names} run(s) after {name}: change them first", 409)
        self._remove((Job.owner == who.name) & (Job.name == name), "the job was deleted", name)
        self.files.delete_tree(home_bucket(who.name), f"jobs/{name}/")

    def remove_owner(self, owner: str) -> None:
        """A removed user's jobs stop and go (their outputs stay in their lake, with their
        data)."""
        self._remove(Job.owner == owner, f"{owner} was removed")

    def _remove(self, which: Any, why: str, name: str | None = None) -> None:
        """The jobs ``which`` selects: their running and waiting runs cancelled (processes
        stopped, outputs kept), then the jobs forgotten with their runs and notices."""
        with self.db.session() as s:
            ids = s.scalars(select(Job.id).where(which)).all()
            if name is not None and not ids:
                raise JobsError(f"job {name!r} does not exist", 404)
            active = s.scalars(
                select(JobRun.id).where(
                    JobRun.job_id.in_(ids), JobRun.state.in_(("running", "waiting"))
                )
            ).all()
        for run_id in active:
            self.scheduler.cancel(run_id, why)
        with self.db.session() as s:
            for job in s.scalars(select(Job).where(Job.id.in_(ids))):
                s.delete(job)

    def run_now(self, who: Reader, name: str, parameters: dict[str, Any] | None) -> RunView:
        """A run by hand, planned now (paused or not), with the job's parameters updated by
        ``parameters``."""
        now = self.scheduler.clock.now_ms()
        with self.db.session() as s:
            job = self._job(s, who, name)
            params = {**json.loads(job.parameters), **_parameters(parameters or {})}
            at = now
            while s.scalar(
                select(JobRun.id).where(JobRun.job_id == job.id, JobRun.planned_ms == at)
            ):
                at += 1  # two by hand in one millisecond stay two
            run = self.scheduler.planned_row(job, at, "manual")
            run.parameters = json.dumps(params, sort_keys=True)
            s.add(run)
            s.flush()
            view = run_view(run)
        self.scheduler.wake()
        return view

    def cancel(self, who: Reader, name: str, run_id: int) -> RunView:
        with self.db.session() as s:
            job = self._job(s, who, name)
            run = s.get(JobRun, run_id)
            if run is None or run.job_id != job.id:
                raise JobsError(f"job {name!r} has no run {run_id}", 404)
        self.scheduler.cancel(run_id, f"cancelled by {who.name}")
        with self.db.session() as s:
            return run_view(s.get(JobRun, run_id))  # type: ignore[arg-type]

    def rerun(self, who: Reader, name: str, run_id: int) -> RunView:
        """An ended, unsuccessful run planned again: the pipeline goes on from this step."""
        with self.db.session() as s:
            job = self._job(s, who, name)
            run = s.get(JobRun, run_id)
            if run is None or run.job_id != job.id:
                raise JobsError(f"job {name!r} has no run {run_id}", 404)
            pipeline.rerun(run, job)
            view = run_view(run)
        self.scheduler.wake()
        return view

    def backfill(self, who: Reader, name: str, start_ms: int, end_ms: int) -> int:
        """Its schedule's times from ``start_ms`` to ``end_ms`` planned as runs; how many."""
        with self.db.session() as s:
            job = self._job(s, who, name)
            count = pipeline.backfill(s, job, start_ms, end_ms, self.scheduler.planned_row)
        self.scheduler.wake()
        return count

    def _apply(self, s: Session, who: Reader, job: Job, changes: dict[str, Any], now: int) -> None:
        unknown = set(changes) - {
            "name",
            "code",
            "code_name",
            "parameters",
            "environment",
            "size",
            "schedule",
            "expr",
            "timezone",
            "paused",
            "webhook",
            "deadline",
            "email",
            "after",
            *CHOICES,
            *LIMITS,
        }
        if unknown:
            raise JobsError(f"unknown fields: {', '.join(sorted(unknown))}")
        if "parameters" in changes:
            job.parameters = json.dumps(_parameters(changes["parameters"]), sort_keys=True)
        choices = self.policies.choices(who.name, who.admin)
        if "environment" in changes:
            env = str(changes["environment"])
            if env not in choices.environments:
                mine = ", ".join(choices.environments) or "none"
                raise JobsError(f"environment {env!r} is not one you may use (yours: {mine})", 403)
            job.environment = env
        if "size" in changes:
            size = str(changes["size"])
            if size not in {z.name for z in choices.sizes}:
                mine = ", ".join(z.name for z in choices.sizes) or "none"
                raise JobsError(f"size {size!r} is not one you may use (yours: {mine})", 403)
            job.size = size
        if {"schedule", "expr", "timezone"} & set(changes):
            kind = str(changes.get("schedule", job.schedule))
            expr = str(changes.get("expr", job.expr if kind == job.schedule else ""))
            zone = str(changes.get("timezone", job.timezone))
            new = sched.parse(kind, expr, zone, now)
            job.schedule, job.expr, job.timezone, job.start_ms = (
                new.kind,
                new.expr,
                new.timezone,
                new.start_ms,
            )
            job.planned_ms = now  # the new schedule counts from now
        for key, allowed in CHOICES.items():
            if key in changes:
                if changes[key] not in allowed:
                    raise JobsError(f"{key} must be one of {', '.join(allowed)}")
                setattr(job, key, changes[key])
        for key, (low, high) in LIMITS.items():
            if key in changes:
                value = changes[key]
                if (
                    isinstance(value, bool)
                    or not isinstance(value, int)
                    or not low <= value <= high
                ):
                    raise JobsError(f"{key} must be a whole number from {low} to {high}")
                setattr(job, key, value)
        if "paused" in changes:
            job.paused = bool(changes["paused"])
        if "deadline" in changes:
            given = str(changes["deadline"] or "")
            job.deadline = sched.valid_deadline(given) if given else ""
            job.deadline_checked_ms = now  # counted from now: no alert for a day gone by
        if "webhook" in changes:
            job.webhook = self.scheduler.notices.seal(str(changes["webhook"] or ""))
        if "email" in changes:
            email = str(changes["email"] or "").strip()
            if email and (len(email) > 254 or not EMAIL_RE.match(email)):
                raise JobsError(f"{email!r} is not an email address")
            job.email = email
        if "after" in changes:
            job.after = pipeline.check_after(s, job, changes["after"])
        if "code" in changes or "code_name" in changes:  # last: nothing refused after it
            self._upload(who, job, changes)

    def _upload(self, who: Reader, job: Job, changes: dict[str, Any]) -> None:
        code_name = str(changes.get("code_name") or job.code_name or "")
        if not CODE_NAME_RE.match(code_name):
            raise JobsError(f"bad file name {code_name!r}: a .ipynb notebook or a .py script")
        if "code" not in changes:
            raise JobsError("a file name comes with its code (code)")
        code = changes["code"]
        data = code.encode() if isinstance(code, str) else b""
        if not data or len(data) > MAX_CODE:
            raise JobsError(f"the code must be text, 1 byte to {MAX_CODE // 2**20} MiB")
        kind = "notebook" if code_name.endswith(".ipynb") else "script"
        if kind == "notebook":
            try:
                doc = json.loads(data)
                assert isinstance(doc, dict) and isinstance(doc.get("cells"), list)
            except (ValueError, AssertionError):
                raise JobsError(f"{code_name} is not a notebook (JSON with cells)") from None
        job.kind, job.code_name = kind, code_name
        job.code_version += 1
        try:
            self.files.put(who, home_bucket(who.name), code_key(job), BytesIO(data))
        except ModelsError as err:
            raise JobsError(str(err), err.status) from None


def _parameters(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise JobsError("parameters must be a JSON object of names to values")
    if len(json.dumps(value)) > 64 * 1024:
        raise JobsError("parameters must fit in 64 KiB of JSON")
    return value
