"""``lakehub endpoint ls|show|scale|canary|follow|undeploy|token|revoke``: model endpoints, as
you (``--hub``/``--token`` or the notebook's environment). ``lakehub model deploy`` makes one."""

from __future__ import annotations

from typing import Any

import click

from lakehub.cli._common import HUB, TOKEN, call, echo_json, hub_client


@click.group()
def endpoint() -> None:
    """Model endpoints: their versions, replicas, canaries, rollouts and tokens."""


def _line(ep: dict[str, Any]) -> str:
    served = f"v{ep['version']}" if ep["version"] else "-"
    canary = f" canary v{ep['canary_version']} {ep['canary_share']}%" if ep["canary_ref"] else ""
    return (
        f"{ep['name']:<24} {ep['model']}@{ep['ref'].lstrip('@')} {served:<5} "
        f"{ep['ready_replicas']}/{ep['replicas']} {ep['status']}{canary}"
    )


@endpoint.command("ls")
@click.option("--json", "as_json", is_flag=True)
@HUB
@TOKEN
def endpoint_ls(as_json: bool, hub: str | None, token: str | None) -> None:
    """The endpoints you can call."""
    from lakehub.serving import list as endpoints

    with hub_client(hub, token) as c:
        found = call(endpoints, client=c)
    if as_json:
        echo_json(found)
        return
    if not found:
        click.echo("no endpoints")
    for ep in found:
        click.echo(_line(ep))


@endpoint.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
@HUB
@TOKEN
def endpoint_show(name: str, as_json: bool, hub: str | None, token: str | None) -> None:
    """An endpoint: what it serves, its address, its rollouts and tokens."""
    from lakehub.serving import get

    with hub_client(hub, token) as c:
        ep = call(get, name, client=c)
        where = f"{c.url}/{ep['path']}"
    if as_json:
        echo_json(ep)
        return
    click.echo(_line(ep))
    click.echo(f"  address: {where}/v2/models/{ep['path'].rsplit('/', 1)[-1]}/infer")
    if ep["message"]:
        click.echo(f"  last failure: {ep['message']}")
    for r in ep["rollouts"][:10]:
        click.echo(
            f"  {r['started_at'][:19]} {r['role']:<6} v{r['version']:<4} {r['state']:<8} "
            f"{r['reason']} ({r['actor']}) {r['message'][:80]}"
        )
    for t in ep["tokens"]:
        state = "revoked" if t["revoked_at"] else "active"
        click.echo(f"  token {t['id']}: {t['name']} {t['hint']} {state}")


def _change(name: str, hub: str | None, token: str | None, **changes: Any) -> None:
    from lakehub.serving import update

    with hub_client(hub, token) as c:
        ep = call(update, name, client=c, wait=600, **changes)
    click.echo(_line(ep))


@endpoint.command("scale")
@click.argument("name")
@click.argument("replicas", type=click.IntRange(1, 16))
@HUB
@TOKEN
def endpoint_scale(name: str, replicas: int, hub: str | None, token: str | None) -> None:
    """Serve with REPLICAS replicas (a rollout: no request fails)."""
    _change(name, hub, token, replicas=replicas)


@endpoint.command("canary")
@click.argument("name")
@click.argument("model_ref", metavar="MODEL", required=False)
@click.option("--share", type=click.IntRange(0, 100), default=10, show_default=True)
@click.option("--clear", is_flag=True, help="Stop the canary")
@HUB
@TOKEN
def endpoint_canary(
    name: str, model_ref: str | None, share: int, clear: bool, hub: str | None, token: str | None
) -> None:
    """Send SHARE percent of requests to MODEL (another version of the endpoint's model);
    promote it by moving the alias the endpoint follows."""
    if clear:
        _change(name, hub, token, clear_canary=True)
    elif model_ref:
        _change(name, hub, token, canary={"model": model_ref, "share": share})
    else:
        _change(name, hub, token, canary_share=share)


@endpoint.command("follow")
@click.argument("name")
@click.option("--off", is_flag=True)
@HUB
@TOKEN
def endpoint_follow(name: str, off: bool, hub: str | None, token: str | None) -> None:
    """Roll out the alias's new version whenever the alias moves (or stop with --off)."""
    _change(name, hub, token, follow_alias=not off)


@endpoint.command("undeploy")
@click.argument("name")
@HUB
@TOKEN
def endpoint_undeploy(name: str, hub: str | None, token: str | None) -> None:
    """Stop the endpoint; requests in flight are answered first."""
    from lakehub.serving import undeploy

    with hub_client(hub, token) as c:
        call(undeploy, name, client=c)
    click.echo(f"{name}: stopped")


@endpoint.command("token")
@click.argument("name")
@click.argument("label")
@HUB
@TOKEN
def endpoint_token(name: str, label: str, hub: str | None, token: str | None) -> None:
    """An application token for NAME only, for a program LABEL names (shown once)."""
    from lakehub.serving import new_token

    with hub_client(hub, token) as c:
        made = call(new_token, name, label, client=c)
    click.echo(made)


@endpoint.command("revoke")
@click.argument("name")
@click.argument("token_id", type=int)
@HUB
@TOKEN
def endpoint_revoke(name: str, token_id: int, hub: str | None, token: str | None) -> None:
    """Revoke token TOKEN_ID of NAME (see ``lakehub endpoint show``)."""
    from lakehub.serving import revoke_token

    with hub_client(hub, token) as c:
        call(revoke_token, name, token_id, client=c)
    click.echo(f"token {token_id} revoked")
