"""Pipelines, backfills and retention, over the scheduler's rows.

- A job with ``after`` (other jobs of its owner) is a step of a pipeline: once a run of every
  job it names has succeeded for the same planned time, a run of it is planned for that time
  (trigger ``after``). The row is unique per job and time, so a step runs once per time however
  many upstreams end. Steps pass data through the lake, by the planned time their runs share
  (``LAKEHUB_JOB_PLANNED`` in every run's environment: ``s3://.../day=2026-12-01/...``).
- A failed, lost or cancelled run is run again by hand (:func:`rerun`): planned again with the
  job's code now (the fix), its attempts counted anew; its success carries the pipeline on from
  that step.
- A backfill plans a job's schedule times over a range as runs (trigger ``backfill``), at most
  ``backfill_parallelism`` of them running at once; their steps follow as any run's do.
- Retention: a job keeps its newest ``keep_runs`` ended runs; older rows go (:func:`prune`),
  and the scheduler removes their outputs from the lake.
- The graph stays a DAG of existing jobs: a job naming itself, an unknown job or a cycle is
  refused, and a job others run after is not deleted until they no longer name it.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from lakehub.server.jobs import schedule as sched
from lakehub.server.jobs.base import JobsError
from lakehub.server.jobs.tables import Job, JobRun

MAX_AFTER = 20
MAX_BACKFILL = 1000  # planned times in one backfill
Planner = Callable[[Job, int, str], JobRun]  # (job, planned ms, trigger) -> a planned row


def upstream(job: Job) -> list[str]:
    found: list[str] = json.loads(job.after or "[]")
    return found


def dependents(s: Session, job: Job) -> list[Job]:
    """The owner's jobs that run after ``job``."""
    named = Job.after.contains(json.dumps(job.name))  # a LIKE first: most jobs name none
    mine = s.scalars(select(Job).where(Job.owner == job.owner, Job.id != job.id, named))
    return [j for j in mine if job.name in upstream(j)]


def check_after(s: Session, job: Job, names: object) -> str:
    """``names`` as ``job``'s upstream jobs, checked; the column's JSON."""
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise JobsError("after is a list of your jobs' names")
    wanted = sorted(set(names))
    if len(wanted) > MAX_AFTER:
        raise JobsError(f"a job runs after at most {MAX_AFTER} others")
    if job.name in wanted:
        raise JobsError("a job cannot run after itself")
    graph = {j.name: upstream(j) for j in s.scalars(select(Job).where(Job.owner == job.owner))}
    unknown = [n for n in wanted if n not in graph]
    if unknown:
        raise JobsError(f"no job of yours named {', '.join(map(repr, unknown))}")
    graph[job.name] = wanted
    seen: set[str] = set()
    todo = list(wanted)
    while todo:  # does anything upstream lead back to the job?
        name = todo.pop()
        if name == job.name:
            raise JobsError(f"{job.name} after {', '.join(wanted)} would make a cycle")
        if name not in seen:
            seen.add(name)
            todo.extend(graph.get(name, []))
    return json.dumps(wanted)


def follow(s: Session, job: Job, run: JobRun, plan: Planner) -> int:
    """``run`` of ``job`` succeeded: plan the steps now ready for its time; how many."""
    planned = 0
    for step in dependents(s, job):
        if step.paused:
            continue
        if s.scalar(
            select(JobRun.id).where(JobRun.job_id == step.id, JobRun.planned_ms == run.planned_ms)
        ):
            continue  # planned already (another upstream's success, or a rerun)
        ups = upstream(step)
        done = s.scalar(
            select(func.count(func.distinct(Job.id)))
            .select_from(JobRun)
            .join(Job, Job.id == JobRun.job_id)
            .where(
                Job.owner == job.owner,
                Job.name.in_(ups),
                JobRun.planned_ms == run.planned_ms,
                JobRun.state == "succeeded",
            )
        )
        if done == len(ups):
            row = plan(step, run.planned_ms, "after")
            row.reason = f"after {', '.join(ups)}"
            s.add(row)
            planned += 1
    return planned


def rerun(run: JobRun, job: Job) -> None:
    """Plan an ended run again, with the job's code now (a fix goes in), its parameters and
    planned time kept."""
    if run.state not in ("failed", "lost", "cancelled", "skipped", "missed"):
        raise JobsError(f"run {run.id} is {run.state}: only an ended, unsuccessful run runs again")
    run.state, run.reason = "planned", "run again by hand"
    run.attempt, run.infra_failures = 0, 0
    run.exit_code = run.ended_ms = run.retry_ms = run.pid = None
    run.code_version = job.code_version


def backfill(s: Session, job: Job, start_ms: int, end_ms: int, plan: Planner) -> int:
    """Plan ``job``'s schedule times in ``[start_ms, end_ms]`` not planned yet; how many."""
    if end_ms < start_ms:
        raise JobsError("a backfill's end comes after its start")
    schedule = sched.Schedule(job.schedule, job.expr, job.timezone, job.start_ms)
    if schedule.kind not in ("cron", "interval"):
        raise JobsError("only a job on a cron or interval schedule has times to backfill")
    times = sched.due(schedule, start_ms - 1, end_ms)
    if len(times) > MAX_BACKFILL:
        raise JobsError(f"{len(times)} times in that range: at most {MAX_BACKFILL} at once")
    taken = set(
        s.scalars(
            select(JobRun.planned_ms).where(JobRun.job_id == job.id, JobRun.planned_ms.in_(times))
        )
    )
    fresh = [t for t in times if t not in taken]
    for t in fresh:
        s.add(plan(job, t, "backfill"))
    return len(fresh)


def backfill_room(s: Session, job: Job) -> bool:
    """May another backfill run of ``job`` start now?"""
    running = s.scalar(
        select(func.count())
        .select_from(JobRun)
        .where(JobRun.job_id == job.id, JobRun.trigger == "backfill", JobRun.state == "running")
    )
    return (running or 0) < job.backfill_parallelism


def prune(s: Session, job: Job) -> list[int]:
    """Forget ``job``'s ended runs beyond its newest ``keep_runs``; their ids."""
    old = s.scalars(
        select(JobRun)
        .where(JobRun.job_id == job.id, JobRun.ended_ms.is_not(None))
        .where(JobRun.state.not_in(("planned", "running", "waiting")))
        .order_by(JobRun.planned_ms.desc(), JobRun.id.desc())
        .offset(job.keep_runs)
    ).all()
    for run in old:
        s.delete(run)
    return [r.id for r in old]
