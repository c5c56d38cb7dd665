"""``lakehub job ls|show|create|update|run|rerun|backfill|runs|output|pause|resume|rm``:
notebooks and scripts the hub runs as you on a schedule, by hand, or after other jobs
(``--hub``/``--token`` or the notebook's environment)."""

from __future__ import annotations

import json
from typing import Any

import click

from lakehub.cli._common import HUB, TOKEN, call, echo_json, fail, hub_client


@click.group()
def job() -> None:
    """Scheduled notebooks and scripts: their schedules, runs and outputs."""


def _line(j: dict[str, Any]) -> str:
    last = j["last_run"]
    state = f"last {last['state']} ({last['planned_at'][:16]})" if last else "never run"
    paused = " paused" if j["paused"] else ""
    return f"{j['name']:<24} {j['code_name']:<24} {j['describe']:<36} {state}{paused}"


def _settings(
    schedule: str | None,
    cron: str | None,
    every: str | None,
    at: str | None,
    tz: str | None,
    params: tuple[str, ...],
    **more: Any,
) -> dict[str, Any]:
    given = [k for k, v in (("cron", cron), ("every", every), ("at", at)) if v]
    if len(given) > 1:
        fail(f"give one of --cron, --every, --at, not {' and '.join(given)}")
    after, no_after = more.pop("after", ()), more.pop("no_after", False)
    out: dict[str, Any] = {k: v for k, v in more.items() if v is not None}
    if after or no_after:
        out["after"] = list(after)
    if out.get("cluster") == "none":
        out["cluster"] = ""
    if cron:
        out |= {"schedule": "cron", "expr": cron}
    elif every:
        out |= {"schedule": "interval", "expr": every}
    elif at:
        out |= {"schedule": "once", "expr": at}
    elif schedule == "manual":
        out["schedule"] = "manual"
    if tz:
        out["timezone"] = tz
    if params:
        out["parameters"] = _parameters(params)
    return out


def _parameters(params: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for p in params:
        name, sep, value = p.partition("=")
        if not sep or not name:
            fail(f"a parameter is NAME=VALUE, not {p!r}")
        try:
            out[name] = json.loads(value)  # numbers, booleans, lists as JSON
        except ValueError:
            out[name] = value  # anything else as text
    return out


def _options(fn: Any) -> Any:
    for option in reversed(
        [
            click.option("--cron", help="a cron expression: '30 3 * * 1-5'"),
            click.option("--every", help="an interval: 15m, 2h, 1d"),
            click.option("--at", help="once, at this time: 2027-01-04T07:00"),
            click.option("--manual", "schedule", flag_value="manual", help="by hand only"),
            click.option("--tz", help="the time zone of --cron and --at: Europe/Paris"),
            click.option("-p", "--param", "params", multiple=True, help="NAME=VALUE"),
            click.option("--env", "environment", help="an environment you may use"),
            click.option("--size", help="a size you may use"),
            click.option("--missed", type=click.Choice(["skip", "latest", "all"])),
            click.option("--concurrency", type=click.Choice(["allow", "forbid", "replace"])),
            click.option("--retries", type=int),
            click.option("--timeout", "timeout_s", type=int, help="seconds"),
            click.option("--webhook", help="a URL POSTed to when a run fails or is missed"),
            click.option("--deadline", help="HH:MM: told when no run succeeded by then"),
            click.option("--email", help="an address its notices are mailed to ('': none)"),
            click.option(
                "--after", "after", multiple=True, help="a job it runs after (again: more)"
            ),
            click.option("--no-after", "no_after", is_flag=True, help="no longer a pipeline step"),
            click.option("--keep-runs", "keep_runs", type=int, help="ended runs kept, newest"),
            click.option("--backfill-parallelism", "backfill_parallelism", type=int),
            click.option("--cluster", type=click.Choice(["dask", "none"]), help="one per run"),
            click.option("--cluster-workers", "cluster_workers", type=int),
        ]
    ):
        fn = option(fn)
    return fn


@job.command("ls")
@click.option("--json", "as_json", is_flag=True)
@HUB
@TOKEN
def job_ls(as_json: bool, hub: str | None, token: str | None) -> None:
    """Your jobs."""
    from lakehub.jobs import list as jobs

    with hub_client(hub, token) as c:
        found = call(jobs, client=c)
    if as_json:
        echo_json(found)
        return
    if not found:
        click.echo("no jobs")
    for j in found:
        click.echo(_line(j))


@job.command("create")
@click.argument("name")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@_options
@HUB
@TOKEN
def job_create(name: str, path: str, hub: str | None, token: str | None, **opts: Any) -> None:
    """A job NAME from the notebook or script at PATH (by hand unless scheduled)."""
    from lakehub.jobs import create

    with hub_client(hub, token) as c:
        j = call(create, name, path, client=c, **_settings(**opts))
    click.echo(_line(j))


@job.command("update")
@click.argument("name")
@click.option("--code", "path", type=click.Path(exists=True, dir_okay=False), help="new code")
@_options
@HUB
@TOKEN
def job_update(
    name: str, path: str | None, hub: str | None, token: str | None, **opts: Any
) -> None:
    """Change a job: its code (a new version), schedule or policies."""
    from lakehub.jobs import update

    with hub_client(hub, token) as c:
        j = call(update, name, path, client=c, **_settings(**opts))
    click.echo(_line(j))


def _pause(name: str, paused: bool, hub: str | None, token: str | None) -> None:
    from lakehub.jobs import update

    with hub_client(hub, token) as c:
        click.echo(_line(call(update, name, client=c, paused=paused)))


@job.command("pause")
@click.argument("name")
@HUB
@TOKEN
def job_pause(name: str, hub: str | None, token: str | None) -> None:
    """No planned runs until resumed (runs by hand still go)."""
    _pause(name, True, hub, token)


@job.command("resume")
@click.argument("name")
@HUB
@TOKEN
def job_resume(name: str, hub: str | None, token: str | None) -> None:
    """Planned runs again, from now (times that fell in the pause are not run)."""
    _pause(name, False, hub, token)


@job.command("run")
@click.argument("name")
@click.option("-p", "--param", "params", multiple=True, help="NAME=VALUE, over the job's")
@click.option("--wait", is_flag=True, help="until it has ended; fails when the run failed")
@HUB
@TOKEN
def job_run(
    name: str, params: tuple[str, ...], wait: bool, hub: str | None, token: str | None
) -> None:
    """Run it now."""
    from lakehub.jobs import run
    from lakehub.jobs import wait as wait_for

    with hub_client(hub, token) as c:
        r = call(run, name, _parameters(params) or None, client=c)
        click.echo(f"run {r['id']} {r['state']}")
        if wait:
            r = call(wait_for, name, r["id"], client=c)
            click.echo(f"run {r['id']} {r['state']} {r['reason']}".rstrip())
            if r["state"] != "succeeded":
                raise SystemExit(1)


@job.command("rerun")
@click.argument("name")
@click.argument("run_id", type=int)
@HUB
@TOKEN
def job_rerun(name: str, run_id: int, hub: str | None, token: str | None) -> None:
    """Run a failed, lost or cancelled run again: a pipeline goes on from that step."""
    from lakehub.jobs import rerun

    with hub_client(hub, token) as c:
        r = call(rerun, name, run_id, client=c)
    click.echo(f"run {r['id']} {r['state']}")


@job.command("backfill")
@click.argument("name")
@click.option("--from", "start", required=True, help="the first time: 2026-11-01T00:00Z")
@click.option("--to", "end", required=True, help="the last time (included)")
@HUB
@TOKEN
def job_backfill(name: str, start: str, end: str, hub: str | None, token: str | None) -> None:
    """Plan its schedule's times in a range as runs (its backfill parallelism at once)."""
    from lakehub.jobs import backfill

    with hub_client(hub, token) as c:
        n = call(backfill, name, start, end, client=c)
    click.echo(f"{name}: {n} runs planned")


@job.command("runs")
@click.argument("name")
@click.option("--limit", type=int, default=20)
@click.option("--json", "as_json", is_flag=True)
@HUB
@TOKEN
def job_runs(name: str, limit: int, as_json: bool, hub: str | None, token: str | None) -> None:
    """Its runs, newest first."""
    from lakehub.jobs import runs

    with hub_client(hub, token) as c:
        found = call(runs, name, limit, client=c)
    if as_json:
        echo_json(found)
        return
    for r in found:
        took = ""
        if r["started_at"] and r["ended_at"]:
            took = f" ({r['started_at'][11:19]}-{r['ended_at'][11:19]})"
        click.echo(
            f"{r['id']:>6} {r['planned_at'][:19]} {r['trigger']:<9} {r['state']:<10}"
            f"{took} {r['reason'][:80]}"
        )


@job.command("output")
@click.argument("name")
@click.argument("run_id", type=int)
@click.option("--log", is_flag=True, help="the log instead of the executed notebook")
@HUB
@TOKEN
def job_output(name: str, run_id: int, log: bool, hub: str | None, token: str | None) -> None:
    """A run's executed notebook (JSON) or its log, to stdout."""
    from lakehub.jobs import output

    with hub_client(hub, token) as c:
        click.echo(call(output, name, run_id, "log.txt" if log else "output.ipynb", client=c))


@job.command("rm")
@click.argument("name")
@HUB
@TOKEN
def job_rm(name: str, hub: str | None, token: str | None) -> None:
    """Cancel its runs and forget it, its code and its outputs."""
    from lakehub.jobs import delete

    with hub_client(hub, token) as c:
        call(delete, name, client=c)
    click.echo(f"job {name} removed")
