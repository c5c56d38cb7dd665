"""Jobs: notebooks and scripts run by the hub on a schedule or by hand, as their owner
(``/api/jobs``). A job is its owner's alone: anyone else gets 404, as for a job that does not
exist."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Response
from pydantic import BaseModel, Field

from lakehub.server.jobs.jobs import JobView, RunView
from lakehub.server.jobs.notices import NoticeView
from lakehub.server.models.base import Reader
from lakehub.server.schema import Instant, to_ms
from lakehub.server.web.auth import Principal, person
from lakehub.server.web.deps import State, User
from lakehub.server.web.schema import INT64

router = APIRouter(prefix="/api/jobs", tags=["jobs"])
RowId = Annotated[int, Path(ge=1, le=INT64)]  # a run's or a notice's id: within the column
notices_router = APIRouter(prefix="/api/notices", tags=["jobs"])


class JobChange(BaseModel):
    code_name: str | None = Field(None, description="the file's name: name.ipynb or name.py")
    code: str | None = Field(None, description="the notebook's JSON or the script, as text")
    parameters: dict[str, Any] | None = Field(None, description="papermill's, or the script's")
    environment: str | None = None
    size: str | None = None
    schedule: Literal["cron", "interval", "once", "manual"] | None = None
    expr: str | None = Field(
        None, description="cron: '30 3 * * 1-5'; interval: '15m'; once: '2027-01-04T07:00'"
    )
    timezone: str | None = Field(None, description="an IANA name (cron and once): Europe/Paris")
    missed: Literal["skip", "latest", "all"] | None = Field(
        None, description="after downtime: skip missed times, run the latest, or all (to a cap)"
    )
    missed_cap: int | None = None
    concurrency: Literal["allow", "forbid", "replace"] | None = None
    retries: int | None = Field(None, description="retries of the job's own failures")
    backoff_s: int | None = Field(None, description="seconds before the first retry, doubling")
    timeout_s: int | None = None
    paused: bool | None = None
    deadline: str | None = Field(
        None, description="HH:MM in the job's time zone: told when no run succeeded by then"
    )
    webhook: str | None = Field(
        None, description="a URL the hub POSTs JSON to when a run fails or is missed ('': none)"
    )
    email: str | None = Field(None, description="an address its notices are mailed to ('': none)")
    after: list[str] | None = Field(
        None, description="jobs of yours it runs after, for the same planned time (a pipeline)"
    )
    backfill_parallelism: int | None = Field(None, description="backfill runs at once (1-16)")
    keep_runs: int | None = Field(None, description="ended runs kept, newest (1-10000)")
    cluster: Literal["", "dask"] | None = Field(
        None, description="'dask': a cluster of its own for each run, stopped after it"
    )
    cluster_workers: int | None = Field(None, description="the run's cluster's workers (1-16)")


class JobIn(JobChange):
    name: str
    code_name: str  # type: ignore[assignment]
    code: str  # type: ignore[assignment]


class BackfillIn(BaseModel):
    start: Instant = Field(description="the first planned time to run (included)")
    end: Instant = Field(description="the last (included)")


class RunIn(BaseModel):
    parameters: dict[str, Any] | None = Field(None, description="over the job's, for this run")


def _reader(who: Principal) -> Reader:
    return Reader(person(who, "jobs"), who.admin)


@router.get("")
async def jobs(who: User, state: State) -> list[JobView]:
    """Your jobs, each with its next times and its last run."""
    return await state.run(state.jobs.owned, _reader(who))


@router.post("", status_code=201)
async def create(body: JobIn, who: User, state: State) -> JobView:
    """A job from a notebook or a script (uploaded with it); by hand unless scheduled."""
    return await state.run(state.jobs.create, _reader(who), body.model_dump(exclude_none=True))


@router.get("/{name}")
async def job(name: str, who: User, state: State) -> JobView:
    return await state.run(state.jobs.get, _reader(who), name)


@router.patch("/{name}")
async def change(name: str, body: JobChange, who: User, state: State) -> JobView:
    """Change the code (a new version), the schedule (counted from now), the policies, or
    pause it (planned times that fall in a pause are not run later)."""
    changes = body.model_dump(exclude_none=True)
    return await state.run(state.jobs.update, _reader(who), name, changes)


@router.delete("/{name}", status_code=204)
async def delete(name: str, who: User, state: State) -> Response:
    """Cancel its runs and forget it, its code and its outputs."""
    await state.run(state.jobs.delete, _reader(who), name)
    return Response(status_code=204)


@router.post("/{name}/runs", status_code=201)
async def run_now(name: str, body: RunIn, who: User, state: State) -> RunView:
    """Run it now (paused or not), with these parameters over the job's."""
    return await state.run(state.jobs.run_now, _reader(who), name, body.parameters)


@router.get("/{name}/runs")
async def runs(name: str, who: User, state: State, limit: int = 50) -> list[RunView]:
    """Its runs, newest first: planned, running, waiting to retry, and how each ended."""
    return await state.run(state.jobs.runs, _reader(who), name, limit)


@router.post("/{name}/runs/{run_id}/cancel")
async def cancel(name: str, run_id: RowId, who: User, state: State) -> RunView:
    return await state.run(state.jobs.cancel, _reader(who), name, run_id)


@router.post("/{name}/runs/{run_id}/rerun")
async def rerun(name: str, run_id: RowId, who: User, state: State) -> RunView:
    """Plan a failed, lost or cancelled run again; its success carries a pipeline on."""
    return await state.run(state.jobs.rerun, _reader(who), name, run_id)


@router.post("/{name}/backfill")
async def backfill(name: str, body: BackfillIn, who: User, state: State) -> dict[str, int]:
    """Its schedule's times in a range, planned as runs (``backfill_parallelism`` at once)."""
    start, end = to_ms(body.start), to_ms(body.end)
    count = await state.run(state.jobs.backfill, _reader(who), name, start, end)
    return {"planned": count}


@router.get(
    "/{name}/runs/{run_id}/{file}",
    responses={200: {"content": {"application/octet-stream": {}}}},
)
async def output(
    name: str, run_id: RowId, file: Literal["output.ipynb", "log.txt"], who: User, state: State
) -> Response:
    """A run's output notebook (executed as far as it got) or its log."""
    data = await state.run(state.jobs.output, _reader(who), name, run_id, file)
    kind = "application/x-ipynb+json" if file.endswith(".ipynb") else "text/plain; charset=utf-8"
    return Response(data, media_type=kind)


@notices_router.get("")
async def notices(who: User, state: State) -> list[NoticeView]:
    """What you must hear of (runs failed, lost or missed), newest first, until dismissed."""
    return await state.run(state.jobs.scheduler.notices.of, person(who, "notices"))


@notices_router.post("/{notice_id}/dismiss", status_code=204)
async def dismiss(notice_id: RowId, who: User, state: State) -> Response:
    await state.run(state.jobs.scheduler.notices.dismiss, person(who, "notices"), notice_id)
    return Response(status_code=204)
