"""``lakehub model ls|show|alias|history|rollback``: registered models, as you (``--hub``/
``--token`` or the notebook's environment). Runs and registrations are MLflow's client's."""

from __future__ import annotations

from datetime import datetime

import click

from lakehub.cli._common import HUB, TOKEN, call, echo_json, hub_client


def _when(at: str) -> str:
    return datetime.fromisoformat(at.replace("Z", "+00:00")).strftime("%Y-%m-%d %H:%M:%S")


@click.group()
def model() -> None:
    """Registered models: versions, aliases and their history, lineage."""


@model.command("ls")
@click.option("--json", "as_json", is_flag=True)
@HUB
@TOKEN
def model_ls(as_json: bool, hub: str | None, token: str | None) -> None:
    """The models you can read."""
    from lakehub.models import list as models

    with hub_client(hub, token) as c:
        found = call(models, client=c)
    if as_json:
        echo_json(found)
        return
    if not found:
        click.echo("no registered models")
    for m in found:
        aliases = " ".join(f"@{a}=v{v}" for a, v in sorted(m["aliases"].items())) or "-"
        latest = f"v{m['latest_version']}" if m["latest_version"] else "-"
        click.echo(f"{m['name']:<28} {m['owner']:<12} {latest:<5} {aliases}")


@model.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
@HUB
@TOKEN
def model_show(name: str, as_json: bool, hub: str | None, token: str | None) -> None:
    """A model's versions with their lineage, and its aliases."""
    from lakehub.models import get

    with hub_client(hub, token) as c:
        m = call(get, name, client=c)
    if as_json:
        echo_json(m)
        return
    click.echo(f"{m['name']} (owner {m['owner']}, you may {m['access']}) {m['description']}")
    for v in m["versions"]:
        lin = v["lineage"]
        aliases = " ".join(f"@{a}" for a in v["aliases"])
        click.echo(
            f"  v{v['version']:<4} {v['status']:<20} {v['size_bytes']:>10} B  "
            f"run {lin.get('run_id', '-')}  by {v['creator']}  {_when(v['created_at'])} {aliases}"
        )
        for what in ("code", "git_commit", "environment_build"):
            if lin.get(what):
                click.echo(f"         {what}: {lin[what]}")
        for d in lin.get("datasets") or []:
            ds = d.get("dataset", d)
            click.echo(f"         read: {ds.get('name', '?')} ({ds.get('source', '')})")


@model.command("alias")
@click.argument("name")
@click.argument("alias")
@click.argument("version", type=click.IntRange(1))
@HUB
@TOKEN
def model_alias(name: str, alias: str, version: int, hub: str | None, token: str | None) -> None:
    """Point ALIAS of model NAME at VERSION."""
    from lakehub.models import set_alias

    with hub_client(hub, token) as c:
        call(set_alias, name, alias, version, client=c)
    click.echo(f"{name}@{alias} -> v{version}")


@model.command("history")
@click.argument("name")
@click.option("--alias", default=None, help="Only this alias")
@HUB
@TOKEN
def model_history(name: str, alias: str | None, hub: str | None, token: str | None) -> None:
    """Every move of the model's aliases: when, by whom, from which version to which."""
    from lakehub.models import history

    with hub_client(hub, token) as c:
        events = call(history, name, alias, client=c)
    if not events:
        click.echo("no alias was ever set")
    for e in events:
        old = f"v{e['old_version']}" if e["old_version"] else "-"
        new = f"v{e['new_version']}" if e["new_version"] else "-"
        click.echo(
            f"{_when(e['at'])}  @{e['alias']:<12} {old:>5} -> {new:<5} "
            f"{e['action']:<16} {e['actor']}"
        )


@model.command("rollback")
@click.argument("name")
@click.argument("alias")
@HUB
@TOKEN
def model_rollback(name: str, alias: str, hub: str | None, token: str | None) -> None:
    """Move ALIAS back to the version it pointed to before its last move."""
    from lakehub.models import rollback

    with hub_client(hub, token) as c:
        version = call(rollback, name, alias, client=c)
    click.echo(f"{name}@{alias} -> v{version} (rolled back)")


@model.command("deploy")
@click.argument("model_ref", metavar="MODEL")
@click.option("--name", default=None, help="The endpoint's name [default: the model's]")
@click.option("--replicas", type=click.IntRange(1, 16), default=1, show_default=True)
@click.option("--size", default=None, help="A size you may use [default: your default]")
@click.option("--follow", is_flag=True, help="Roll out the alias's new version when it moves")
@click.option("--batching", is_flag=True, help="Predict requests that arrive together at once")
@click.option("--no-wait", is_flag=True, help="Return at once, not when it serves")
@HUB
@TOKEN
def model_deploy(
    model_ref: str,
    name: str | None,
    replicas: int,
    size: str | None,
    follow: bool,
    batching: bool,
    no_wait: bool,
    hub: str | None,
    token: str | None,
) -> None:
    """Serve MODEL (name@alias, name/N, or name: its latest version) as an endpoint, e.g.
    ``lakehub model deploy churn@champion --replicas 2``; see ``lakehub endpoint``."""
    from lakehub.serving import deploy

    with hub_client(hub, token) as c:
        ep = call(
            deploy,
            model_ref,
            name=name,
            replicas=replicas,
            size=size,
            follow_alias=follow,
            batching=batching,
            wait=0 if no_wait else 600,
            client=c,
        )
        where = f"{c.url}/{ep['path']}"
    state = "deploying" if no_wait else f"serving v{ep['version']}"
    click.echo(f"{ep['name']}: {state} with {ep['replicas']} replica(s) at {where}")
