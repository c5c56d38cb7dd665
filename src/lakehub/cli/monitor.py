"""``lakehub monitor query|dashboard|alerts|silence|silences|unsilence``: the platform's metrics
and alerts (``--hub``/``--token`` or the notebook's environment)."""

from __future__ import annotations

import time
from typing import Any

import click

from lakehub.cli._common import HUB, TOKEN, call, echo_json, fail, hub_client


@click.group()
def monitor() -> None:
    """Metrics, dashboards and alerts (yours; an administrator's: everything)."""


def _when(ms: int | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ms / 1000)) + "Z" if ms else "-"


@monitor.command("query")
@click.argument("expr")
@click.option("--hours", type=float, help="a range: the last HOURS [default: the value now]")
@click.option("--step", type=float, help="seconds between points of a range")
@click.option("--json", "as_json", is_flag=True, help="every series and point, as JSON")
@HUB
@TOKEN
def query(
    expr: str,
    hours: float | None,
    step: float | None,
    as_json: bool,
    hub: str | None,
    token: str | None,
) -> None:
    """Evaluate the PromQL EXPR: one line per series, with its latest value."""
    from lakehub.monitoring import query as run

    found = call(run, expr, hours=hours, step=step, client=hub_client(hub, token))
    if as_json:
        echo_json(found)
        return
    for s in found:
        labels = ",".join(f'{k}="{v}"' for k, v in sorted(s["labels"].items()))
        last = float(s["points"][-1][1]) if s["points"] else float("nan")
        click.echo(f"{{{labels}}} {last:g}")
    if not found:
        click.echo("no series", err=True)


@monitor.command("dashboard")
@click.argument("name", default="mine")
@click.option("--hours", type=float, default=1.0, show_default=True)
@HUB
@TOKEN
def dashboard(name: str, hours: float, hub: str | None, token: str | None) -> None:
    """Each panel of dashboard NAME with its series' latest values (the portal draws them)."""
    from lakehub.monitoring import dashboard as get

    board = call(get, name, hours=hours, client=hub_client(hub, token))
    for p in board["panels"]:
        values = ", ".join(
            f"{s['name']} {float(s['points'][-1][1]):g}" for s in p["series"] if s["points"]
        )
        click.echo(f"{p['title']}: {values or p.get('error') or 'no data'}")


@monitor.command("alerts")
@click.option("--firing", is_flag=True, help="only those firing now")
@HUB
@TOKEN
def alerts(firing: bool, hub: str | None, token: str | None) -> None:
    """Alerts, newest first: when each fired and resolved, and who silenced it."""
    from lakehub.monitoring import alerts as get

    for a in call(get, firing=firing, client=hub_client(hub, token)):
        sil = a["silenced"]
        note = f"  silenced by {sil['by']}: {sil['reason']}" if sil else ""
        resolved = _when(a["resolved_ms"]) if a["resolved_ms"] else "FIRING"
        click.echo(
            f"{_when(a['fired_ms'])}  {resolved:20}  {a['severity']:8}  "
            f"{a['rule']}: {a['summary']}{note}"
        )


@monitor.command("silence")
@click.option("--reason", required=True, help="why: kept in the alerts' history")
@click.option("--rule", default="", help="the rule [default: every rule]")
@click.option("--label", "labels", multiple=True, help="NAME=VALUE the alerts must have")
@click.option("--hours", type=float, default=1.0, show_default=True)
@HUB
@TOKEN
def silence(
    reason: str,
    rule: str,
    labels: tuple[str, ...],
    hours: float,
    hub: str | None,
    token: str | None,
) -> None:
    """Keep matching alerts' notices from going out for a while."""
    from lakehub.monitoring import silence as make

    matchers: dict[str, Any] = {}
    for item in labels:
        key, eq, value = item.partition("=")
        if not eq or not key:
            fail(f"--label is NAME=VALUE, not {item!r}")
        matchers[key] = value
    made = call(
        make, reason, rule=rule, labels=matchers, hours=hours, client=hub_client(hub, token)
    )
    click.echo(f"silence {made['id']} until {_when(made['ends_ms'])}")


@monitor.command("silences")
@HUB
@TOKEN
def silences(hub: str | None, token: str | None) -> None:
    """Silences, newest first."""
    from lakehub.monitoring import silences as get

    for s in call(get, client=hub_client(hub, token)):
        labels = " ".join(f"{k}={v}" for k, v in s["matchers"].items())
        state = "active" if s["active"] else "ended"
        click.echo(
            f"{s['id']}  {state:6}  until {_when(s['ends_ms'])}  {s['rule'] or 'every rule'}"
            f" {labels}  by {s['created_by']}: {s['reason']}"
        )


@monitor.command("unsilence")
@click.argument("silence_id", type=int)
@HUB
@TOKEN
def unsilence(silence_id: int, hub: str | None, token: str | None) -> None:
    """End silence SILENCE_ID now."""
    from lakehub.monitoring import end_silence

    call(end_silence, silence_id, client=hub_client(hub, token))
    click.echo(f"silence {silence_id} ended")


@monitor.command("export")
@click.option("--day", help="YYYY-MM-DD (UTC) [default: yesterday]")
@HUB
@TOKEN
def export(day: str | None, hub: str | None, token: str | None) -> None:
    """Write a day's operations data to the space opsdata now (administrators)."""
    c = hub_client(hub, token)
    out = call(c.request, "POST", "/api/ops/export", json={"day": day})
    rows = ", ".join(f"{n} {k}" for k, n in out["rows"].items())
    click.echo(f"{out['day']}: {rows} rows in s3://{out['bucket']}/")
