"""The scheduler: in the control plane, never in a user's server. Every second (:meth:`tick`):

1. plan: each active job's planned times since it was last planned become rows (unique per job
   and time) before anything starts; times older than ``LATE_MS`` were missed while the hub was
   down and follow the job's policy: ``skip`` (all ``missed``), ``latest`` (the newest runs,
   unless a time is current), ``all`` (the newest ``missed_cap`` run, one after another); at
   most ``MISSED_ROWS`` missed rows are kept;
2. start: planned rows now due, by the job's concurrency: ``allow``; ``forbid`` (skipped while
   another runs); ``replace`` (the running one is cancelled); runs caught up or asked for by
   hand are never skipped: they wait for the running one unless ``allow``;
3. watch: running attempts are polled (the heartbeat); past the job's timeout one is stopped;
   an attempt that ends with the job's own failure is retried ``retries`` times, with exponential
   backoff and jitter; an infrastructure failure (the runner could not run it, the process
   vanished, a crash of the control plane that lost it) is retried ``INFRA_RETRIES`` times;
   each ended attempt's output notebook and log go to the lake.

The clock is the area's :class:`~lakehub.server.jobs.base.Clock`: the tests move it by hand.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import threading
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from lakehub.server.compute.spark_procs import create_beneath
from lakehub.server.db import Database
from lakehub.server.identity.users import home_bucket
from lakehub.server.jobs import pipeline
from lakehub.server.jobs import schedule as sched
from lakehub.server.jobs.base import FAILED, Attempt, Clock, Executor, RunSpec
from lakehub.server.jobs.notices import Notices
from lakehub.server.jobs.outputs import store
from lakehub.server.jobs.tables import Job, JobRun
from lakehub.server.models.base import ArtifactStore, ModelsError, Reader
from lakehub.server.notebooks.policy import Policies
from lakehub.server.notebooks.registry import Environments
from lakehub.server.schema import from_ms

log = logging.getLogger("lakehub.jobs")
LATE_MS = 60_000  # a planned time this old when first seen was missed (the hub was down)
MISSED_ROWS = 100  # missed times kept as rows per pass; the oldest kept one counts the rest
INFRA_RETRIES = 3
WATCH_S = 0.05  # how often running attempts are looked at for their end
MAX_BACKOFF_S = 3600
ACTIVE = ("running", "waiting")


def code_key(job: Job, version: int | None = None) -> str:
    return f"jobs/{job.name}/code/{version or job.code_version}/{job.code_name}"


def run_prefix(job: Job, run_id: int) -> str:
    return f"jobs/{job.name}/runs/{run_id}/"


def schedule_of(job: Job) -> sched.Schedule:
    return sched.Schedule(job.schedule, job.expr, job.timezone, job.start_ms)


class Scheduler:
    def __init__(
        self,
        db: Database,
        executor: Executor,
        environments: Environments,
        policies: Policies,
        files: ArtifactStore,
        job_env: Callable[[str], dict[str, str]],
        notices: Notices,
    ) -> None:
        self.db = db
        self.executor = executor
        self.environments = environments
        self.policies = policies
        self.files = files
        self.job_env = job_env  # owner -> their lake keys, API and MLflow tokens
        self.notices = notices
        self.attempts: dict[int, Attempt] = {}  # run id -> the attempt running now
        self._loops: list[asyncio.Task[None]] = []
        self._wake = threading.Event()
        self._outputs: list[tuple[str, str, Path]] = []  # (owner, lake prefix, attempt folder)
        self._ended_jobs: set[int] = set()  # whose history to prune after this pass

    @property
    def clock(self) -> Clock:
        return self.notices.clock

    @clock.setter
    def clock(self, clock: Clock) -> None:
        self.notices.clock = clock

    # the loop ---------------------------------------------------------------------------------
    def start(self) -> None:
        if not self._loops:
            loop = asyncio.get_running_loop()
            self._loops = [
                loop.create_task(self._scheduling()),
                loop.create_task(self._every_second(self.notices.deliver)),
            ]

    def wake(self) -> None:
        """A run was asked for, or cancelled: pass now rather than at the next second."""
        self._wake.set()

    async def _scheduling(self) -> None:
        """A pass every second, or sooner: at the next planned time, when woken, or when an
        attempt ends (looked at every ``WATCH_S`` while any runs)."""
        while True:
            self._wake.clear()
            due = 0
            try:
                due = await asyncio.to_thread(self.tick)
            except Exception:  # noqa: BLE001 (the loop outlives one bad pass; logged)
                log.exception("a pass of the scheduler failed")
            until = time.monotonic() + 1.0
            if due:
                until = min(until, time.monotonic() + (due - self.clock.now_ms()) / 1000)
            while (left := until - time.monotonic()) > 0:
                step = min(left, WATCH_S) if self.attempts else left
                if await asyncio.to_thread(self._wake.wait, step):
                    break
                running = list(self.attempts.values())
                if running and not all(map(self.executor.running, running)):
                    break

    async def stop(self) -> None:
        for task in self._loops:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._loops = []

    async def _every_second(self, step: Callable[[], object]) -> None:
        while True:
            wait = 1.0
            try:
                due = await asyncio.to_thread(step)
                if isinstance(due, int) and due > 0:  # a planned time comes before the second
                    wait = min(wait, (due - self.clock.now_ms()) / 1000)
            except Exception:  # noqa: BLE001 (the loop outlives one bad pass; logged)
                log.exception("a pass of the scheduler failed")
            await asyncio.sleep(max(wait, 0.005))

    def tick(self) -> int:
        """One pass; returns the next planned time of any job (0: none), which the loop wakes
        for rather than at its next second."""
        now = self.clock.now_ms()
        upcoming = []
        with self.db.session() as s:
            for job in s.scalars(select(Job).where(Job.paused.is_(False))):
                self._plan(s, job, now)
                self.notices.alerts(s, job, now)
                upcoming.append(sched.next_time(schedule_of(job), job.planned_ms) or 0)
        ended = self._watch(now)
        self._start_due(now, ending={run_id for run_id, *_ in ended})
        self._close(ended, now)  # after the starts: a due run waits for no lake write
        self._flush_outputs()
        self._prune()
        return min((t for t in upcoming if t), default=0)

    # 1. plan ----------------------------------------------------------------------------------
    def _plan(self, s: Session, job: Job, now: int) -> None:
        times = sched.due(schedule_of(job), job.planned_ms, now)
        if not times:  # nothing in (planned_ms, now]: left as it is, no write
            return
        job.planned_ms = max(job.planned_ms, now)
        missed = [t for t in times if t < now - LATE_MS]
        current = [t for t in times if t >= now - LATE_MS]
        catch_up: list[int] = []  # by the policy; "latest" needs none when a time is current
        if missed and job.missed == "latest" and not current:
            catch_up = missed[-1:]
        elif missed and job.missed == "all" and job.missed_cap > 0:
            catch_up = missed[-job.missed_cap :]
        skipped = missed[: len(missed) - len(catch_up)]
        kept = skipped[-MISSED_ROWS:]
        wanted = [*kept, *catch_up, *current]
        taken = set(
            s.scalars(
                select(JobRun.planned_ms).where(
                    JobRun.job_id == job.id, JobRun.planned_ms.in_(wanted)
                )
            )
        )
        if skipped:
            self.notices.record(
                s,
                job,
                None,
                "missed",
                f"{len(skipped)} planned time(s) missed while the hub was down, the last at "
                f"{from_ms(skipped[-1]):%Y-%m-%d %H:%M}Z (missed policy: {job.missed})",
            )
        for t in kept:
            if t in taken:
                continue
            reason = "the hub was down at its time (missed policy: " + job.missed + ")"
            if t == kept[0] and len(skipped) > len(kept):
                reason += f"; {len(skipped) - len(kept)} earlier times not recorded"
            s.add(self.planned_row(job, t, "schedule", "missed", reason, at=now))
        for t in catch_up:
            if t not in taken:
                s.add(self.planned_row(job, t, "catch-up"))
        for t in current:
            if t not in taken:
                s.add(self.planned_row(job, t, "schedule"))

    @staticmethod
    def planned_row(
        job: Job,
        at_ms: int,
        trigger: str,
        state: str = "planned",
        reason: str = "",
        at: int | None = None,
    ) -> JobRun:
        return JobRun(
            job_id=job.id,
            planned_ms=at_ms,
            trigger=trigger,
            state=state,
            reason=reason,
            code_version=job.code_version,
            parameters=job.parameters,
            ended_ms=at,
        )

    # 2. start ---------------------------------------------------------------------------------
    def _start_due(self, now: int, ending: set[int] | None = None) -> None:
        with self.db.session() as s:
            due = s.scalars(
                select(JobRun.id)
                .where(
                    ((JobRun.state == "planned") & (JobRun.planned_ms <= now))
                    | ((JobRun.state == "waiting") & (JobRun.retry_ms <= now))
                )
                .order_by(JobRun.planned_ms)
            ).all()
        for run_id in due:
            self._start(run_id, now, ending or set())

    def _start(self, run_id: int, now: int, ending: set[int]) -> None:
        """Recorded as running before its process starts: a crash in between leaves a run the
        next control plane finds (by its key) or counts as lost, never one started twice."""
        with self.db.session() as s:
            run = s.get(JobRun, run_id)
            if run is None or run.state not in ("planned", "waiting"):
                return
            job = s.get(Job, run.job_id)
            assert job is not None
            if run.state == "planned":
                others = [
                    o
                    for o in s.scalars(
                        select(JobRun).where(
                            JobRun.job_id == job.id, JobRun.state.in_(ACTIVE), JobRun.id != run.id
                        )
                    )
                    if o.id not in ending  # ended in this pass, recorded just after
                ]
                if others and job.concurrency != "allow" and run.trigger != "schedule":
                    return  # caught up or asked for by hand: queued behind what runs
                if run.trigger == "backfill" and not pipeline.backfill_room(s, job):
                    return  # its backfill runs its parallelism already
                if others and job.concurrency == "forbid":
                    run.state, run.ended_ms = "skipped", now
                    run.reason = f"run {others[0].id} was still running (concurrency: forbid)"
                    return
                for other in others if job.concurrency == "replace" else ():
                    self._cancel(job, other, now, f"replaced by run {run.id}")
            run.state, run.pid, run.exit_code = "running", None, None
            run.attempt += 1
            run.started_ms = run.started_ms or now
            run.heartbeat_ms, run.retry_ms = now, None
            key = self._key(job, run)
        try:
            spec = self._spec(job, run, key)
            attempt = self.executor.start(spec)
        except (ModelsError, OSError, LookupError) as err:
            with self.db.session() as s:
                row, job_row = s.get(JobRun, run_id), s.get(Job, job.id)
                if row is not None and job_row is not None:
                    self._ended(s, job_row, row, -1, now, f"could not start: {err}")
            return
        self.attempts[run_id] = attempt
        with self.db.session() as s:
            row = s.get(JobRun, run_id)
            if row is not None:
                row.pid, row.environment_build = attempt.pid, spec.python.parent.parent.name

    @staticmethod
    def _key(job: Job, run: JobRun) -> str:
        return f"{job.id}-{run.id}-{run.attempt}"

    def _spec(self, job: Job, run: JobRun, key: str) -> RunSpec:
        env_dir = self.environments.path(job.environment)
        if env_dir is None:
            raise LookupError(f"the environment {job.environment!r} is not built")
        size = next((z for z in self.policies.sizes() if z.name == job.size), None)
        if size is None:
            raise LookupError(f"the size {job.size!r} is gone")
        work = self.executor.work_dir(job.owner, key)
        who = Reader(job.owner)
        # written through the folders' descriptors, and the owner's from the start: the folder
        # is in their home, where a link they planted would have the hub, root, write (or chown)
        # wherever it points
        with create_beneath(work, job.code_name) as f:
            for chunk in self.files.get(
                who, home_bucket(job.owner), code_key(job, run.code_version)
            ):
                f.write(chunk)
        with create_beneath(work, "parameters.json") as f:
            f.write(run.parameters.encode())
        kind = "notebook" if job.kind == "notebook" else "script"
        cluster = ("--cluster", f"{job.cluster}:{job.cluster_workers}") if job.cluster else ()
        return RunSpec(
            key=key,
            owner=job.owner,
            python=env_dir / "bin" / "python",
            work_dir=work,
            argv=("--kind", kind, "--code", job.code_name, *cluster),
            env={
                **self.job_env(job.owner),
                "LAKEHUB_JOB_PLANNED": from_ms(run.planned_ms).isoformat(),
            },
            cpus=size.cpus,
            memory=size.memory,
        )

    # 3. watch ---------------------------------------------------------------------------------
    def _watch(self, now: int) -> list[tuple[int, int, str, str]]:
        """Poll what runs (a heartbeat); the attempts that ended or ran past their timeout:
        (run id, exit code, why, lake prefix), closed by :meth:`_close`."""
        ended: list[tuple[int, int, str, str]] = []
        with self.db.session() as s:
            for run in s.scalars(select(JobRun).where(JobRun.state == "running")).all():
                job = s.get(Job, run.job_id)
                assert job is not None
                attempt = self.attempts.get(run.id) or self._adopt(job, run)
                code = self.executor.poll(attempt)
                if code is None and now - (run.started_ms or now) > job.timeout_s * 1000:
                    why = f"timed out after {job.timeout_s} s"
                    ended.append((run.id, FAILED, why, run_prefix(job, run.id)))
                elif code is None:
                    run.heartbeat_ms = now
                else:
                    ended.append((run.id, code, "", run_prefix(job, run.id)))
        return ended

    def _close(self, ended: list[tuple[int, int, str, str]], now: int) -> None:
        """Ended attempts: a timed-out one stopped, the output and log of each put into the
        lake, then each end recorded, outside any transaction until then: whoever sees a run
        ended finds its output."""
        if not ended:
            return
        for run_id, _, why, _ in ended:
            if why:
                self.executor.stop(self.attempts[run_id])
        specs = [(self.attempts[r].spec, prefix) for r, _, _, prefix in ended]
        store(self.files, [(spec.owner, prefix, spec.work_dir) for spec, prefix in specs])
        with self.db.session() as s:
            for run_id, code, why, _ in ended:
                row = s.get(JobRun, run_id)
                owner = s.get(Job, row.job_id) if row is not None else None
                if row is not None and owner is not None and row.state == "running":
                    self._ended(s, owner, row, code, now, why)

    def _adopt(self, job: Job, run: JobRun) -> Attempt:
        """A run an earlier control plane started: its attempt, by its key and pid."""
        attempt = self.executor.adopt(job.owner, self._key(job, run), run.pid)
        self.attempts[run.id] = attempt
        return attempt

    def _ended(self, s: Session, job: Job, run: JobRun, code: int, now: int, why: str) -> None:
        attempt = self.attempts.pop(run.id, None)
        if attempt is not None and attempt.spec.work_dir.exists():  # not stored yet (_watch)
            self._keep_output(job, run, attempt.spec.work_dir)
        run.exit_code, run.heartbeat_ms = code, now
        self._ended_jobs.add(job.id)
        if code == 0:
            run.state, run.ended_ms, run.reason = "succeeded", now, ""
            job.stale_told = False
            if pipeline.follow(s, job, run, self.planned_row):
                self.wake()  # its next steps start at the next pass, now
            return
        infra = code not in (0, FAILED)
        if infra:
            run.infra_failures += 1
        own_failures = run.attempt - run.infra_failures
        why = why or (
            "the job's code failed (see its output)"
            if not infra
            else f"the run could not complete (exit {code}): an infrastructure failure"
        )
        retry = run.infra_failures <= INFRA_RETRIES if infra else own_failures <= job.retries
        if retry:
            n = run.attempt
            delay = min(job.backoff_s * 2 ** max(n - 1, 0), MAX_BACKOFF_S) * random.uniform(
                0.8, 1.2
            )
            run.state, run.retry_ms = "waiting", now + int(delay * 1000)
            run.reason = f"{why}; attempt {n + 1} in {delay:.0f} s"
            return
        run.state, run.ended_ms, run.reason = ("lost" if infra else "failed"), now, why
        self.notices.record(s, job, run.id, run.state, f"run {run.id} {run.state}: {why}")

    def _cancel(self, job: Job, run: JobRun, now: int, why: str) -> None:
        attempt = self.attempts.pop(run.id, None)
        if attempt is None and run.state == "running":
            attempt = self.executor.adopt(job.owner, self._key(job, run), run.pid)
        if attempt is not None:
            self.executor.stop(attempt)
            self._keep_output(job, run, attempt.spec.work_dir)
        run.state, run.ended_ms, run.reason = "cancelled", now, why

    def _keep_output(self, job: Job, run: JobRun, work: Path) -> None:
        """A cancelled or unrecorded attempt's output goes into the lake once the transaction
        that recorded its end has committed (:meth:`_flush_outputs`)."""
        self._outputs.append((job.owner, run_prefix(job, run.id), work))

    def _flush_outputs(self) -> None:
        store(self.files, self._outputs)
        self._outputs = []

    def _prune(self) -> None:
        """Runs beyond a job's ``keep_runs`` go, with their outputs."""
        while self._ended_jobs:
            with self.db.session() as s:
                job = s.get(Job, self._ended_jobs.pop())
                gone = pipeline.prune(s, job) if job is not None else []
                where = [run_prefix(job, r) for r in gone] if job is not None else []
                owner = job.owner if job is not None else ""
            for prefix in where:
                self.files.delete_tree(home_bucket(owner), prefix)

    # by hand ----------------------------------------------------------------------------------
    def cancel(self, run_id: int, why: str) -> None:
        with self.db.session() as s:
            run = s.get(JobRun, run_id)
            job = s.get(Job, run.job_id) if run is not None else None
            if run is not None and job is not None and run.state in ("planned", *ACTIVE):
                self._cancel(job, run, self.clock.now_ms(), why)
        self._flush_outputs()
