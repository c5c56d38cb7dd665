"""The portal's jobs: make one from an uploaded notebook or script with its schedule, see its
next times and every run (state, reason, times, attempts) with its output notebook and log, run
it now, pause or resume it, remove it. A refused form comes back as typed, with the reason."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Form, HTTPException, Request, UploadFile
from fastapi.responses import HTMLResponse, Response

from lakehub.server.jobs.base import JobsError
from lakehub.server.models.base import Reader
from lakehub.server.schema import to_ms
from lakehub.server.web.auth import Principal
from lakehub.server.web.deps import Browser, State
from lakehub.server.web.portal.base import back, page

router = APIRouter(include_in_schema=False)
FIELDS = ("name", "schedule", "expr", "timezone", "missed", "concurrency", "retries", "timeout_s")


def _reader(who: Principal) -> Reader:
    if who.local:
        raise HTTPException(400, "the local administrator has no jobs: log in as a user")
    return Reader(who.name, who.admin)


def _ms(text: str) -> int:
    """An ISO time as typed (UTC unless it says otherwise), in ms."""
    return to_ms(datetime.fromisoformat(text.strip().replace("Z", "+00:00")))


def _where(name: str) -> str:
    return f"jobs/{quote(name, safe='')}"


@router.get("/jobs", response_class=HTMLResponse)
async def jobs(
    request: Request, who: Browser, state: State, msg: str = "", error: str = ""
) -> Response:
    form = {"schedule": "manual", "timezone": "UTC", "missed": "latest", "concurrency": "forbid"}
    return await _jobs_page(request, who, state, form, msg=msg, error=error)


async def _jobs_page(
    request: Request,
    who: Principal,
    state: State,
    form: dict[str, Any],
    status: int = 200,
    **ctx: Any,
) -> Response:
    found = await state.run(state.jobs.owned, _reader(who))
    choices = await state.run(state.policies.choices, who.name, who.admin)
    notices = await state.run(state.jobs.scheduler.notices.of, _reader(who).name)
    return page(
        request,
        "jobs.html",
        status=status,
        who=who,
        jobs=found,
        form=form,
        choices=choices,
        notices=notices,
        **ctx,
    )


@router.post("/jobs", response_class=HTMLResponse)
async def create(
    request: Request,
    who: Browser,
    state: State,
    code: UploadFile,
    name: Annotated[str, Form()] = "",
    schedule: Annotated[str, Form()] = "manual",
    expr: Annotated[str, Form()] = "",
    timezone: Annotated[str, Form()] = "UTC",
    environment: Annotated[str, Form()] = "",
    size: Annotated[str, Form()] = "",
    missed: Annotated[str, Form()] = "latest",
    concurrency: Annotated[str, Form()] = "forbid",
    retries: Annotated[int, Form()] = 0,
    timeout_s: Annotated[int, Form()] = 3600,
    webhook: Annotated[str, Form()] = "",
    deadline: Annotated[str, Form()] = "",
    email: Annotated[str, Form()] = "",
    after: Annotated[str, Form()] = "",
    cluster: Annotated[str, Form()] = "",
    cluster_workers: Annotated[int, Form()] = 2,
) -> Response:
    spec: dict[str, Any] = {
        "name": name.strip(),
        "schedule": schedule,
        "expr": expr,
        "timezone": timezone,
        "missed": missed,
        "concurrency": concurrency,
        "retries": retries,
        "timeout_s": timeout_s,
        "code_name": code.filename or "",
    }
    if webhook.strip():
        spec["webhook"] = webhook.strip()
    if deadline.strip():
        spec["deadline"] = deadline.strip()
    if email.strip():
        spec["email"] = email.strip()
    if after.strip():
        spec["after"] = [a.strip() for a in after.split(",") if a.strip()]
    if cluster:
        spec |= {"cluster": cluster, "cluster_workers": cluster_workers}
    if environment:
        spec["environment"] = environment
    if size:
        spec["size"] = size
    try:
        data = await code.read()
        spec["code"] = data.decode()
        job = await state.run(state.jobs.create, _reader(who), spec)
    except (JobsError, UnicodeDecodeError) as err:
        status = err.status if isinstance(err, JobsError) else 400
        form = {k: spec.get(k) for k in (*FIELDS, "environment", "size", "webhook", "deadline")}
        form |= {"email": email, "after": after, "cluster": cluster}
        form["cluster_workers"] = cluster_workers
        return await _jobs_page(request, who, state, form, status, error=str(err))
    return back(state, _where(job.name), msg=f"Job {job.name}: {job.describe}.")


@router.get("/jobs/{name}", response_class=HTMLResponse)
async def job(
    request: Request, name: str, who: Browser, state: State, msg: str = "", error: str = ""
) -> Response:
    try:
        view = await state.run(state.jobs.get, _reader(who), name)
        runs = await state.run(state.jobs.runs, _reader(who), name, 100)
    except JobsError as err:
        raise HTTPException(err.status, str(err)) from None
    return page(request, "job.html", who=who, job=view, runs=runs, msg=msg, error=error)


@router.post("/jobs/{name}/run")
async def run_now(name: str, who: Browser, state: State) -> Response:
    try:
        run = await state.run(state.jobs.run_now, _reader(who), name, None)
    except JobsError as err:
        return back(state, _where(name), error=str(err))
    return back(state, _where(name), msg=f"Run {run.id} starts now.")


@router.post("/jobs/{name}/pause")
async def pause(name: str, who: Browser, state: State, paused: Annotated[str, Form()]) -> Response:
    try:
        await state.run(state.jobs.update, _reader(who), name, {"paused": paused == "yes"})
    except JobsError as err:
        return back(state, _where(name), error=str(err))
    return back(state, _where(name), msg="Paused." if paused == "yes" else "Resumed from now.")


@router.post("/jobs/{name}/runs/{run_id}/rerun")
async def rerun(name: str, run_id: int, who: Browser, state: State) -> Response:
    try:
        run = await state.run(state.jobs.rerun, _reader(who), name, run_id)
    except JobsError as err:
        return back(state, _where(name), error=str(err))
    return back(state, _where(name), msg=f"Run {run.id} runs again.")


@router.post("/jobs/{name}/backfill")
async def backfill(
    name: str,
    who: Browser,
    state: State,
    start: Annotated[str, Form()],
    end: Annotated[str, Form()],
) -> Response:
    try:
        first, last = (_ms(t) for t in (start, end))
        n = await state.run(state.jobs.backfill, _reader(who), name, first, last)
    except ValueError:
        return back(state, _where(name), error="a backfill's times: 2026-11-01T00:00Z")
    except JobsError as err:
        return back(state, _where(name), error=str(err))
    return back(state, _where(name), msg=f"{n} runs planned.")


@router.post("/jobs/{name}/remove")
async def remove(name: str, who: Browser, state: State) -> Response:
    try:
        await state.run(state.jobs.delete, _reader(who), name)
    except JobsError as err:
        return back(state, _where(name), error=str(err))
    return back(state, "jobs", msg=f"Job {name} removed.")


@router.get("/jobs/{name}/runs/{run_id}/{file}")
async def output(name: str, run_id: int, file: str, who: Browser, state: State) -> Response:
    """A run's log as text, or its output notebook as a download (never rendered here)."""
    try:
        data = await state.run(state.jobs.output, _reader(who), name, run_id, file)
    except JobsError as err:
        raise HTTPException(err.status, str(err)) from None
    if file == "log.txt":
        return Response(data, media_type="text/plain; charset=utf-8")
    disposition = f'attachment; filename="{name}-run{run_id}.ipynb"'
    return Response(
        data, media_type="application/x-ipynb+json", headers={"Content-Disposition": disposition}
    )


@router.post("/jobs-notices/{notice_id}/dismiss")
async def dismiss(notice_id: int, who: Browser, state: State) -> Response:
    try:
        await state.run(state.jobs.scheduler.notices.dismiss, _reader(who).name, notice_id)
    except JobsError as err:
        return back(state, "jobs", error=str(err))
    return back(state, "jobs")
