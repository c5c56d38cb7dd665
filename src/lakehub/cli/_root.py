"""The ``lakehub`` command group: ``up``, ``down``, ``status`` and the administrator's ``user``,
``group``, ``space`` and ``quota``; the other groups come from their own modules."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from lakehub.cli._common import DATA_DIR, as_admin, echo_json, fail, settings_or_fail
from lakehub.cli.compute import compute
from lakehub.cli.connection import connection
from lakehub.cli.endpoint import endpoint
from lakehub.cli.env import env
from lakehub.cli.job import job
from lakehub.cli.lake import lake
from lakehub.cli.model import model
from lakehub.cli.monitor import monitor
from lakehub.cli.notebook import COMMANDS
from lakehub.cli.publish import publish
from lakehub.cli.stream import COMMANDS as STREAM_COMMANDS


@click.group()
def main() -> None:
    """LakeHub: a data lake, notebooks and compute in one install."""


@main.command()
@DATA_DIR
@click.option("--port", type=int, default=None, help="Front door port [default: 8000]")
@click.option("--detach", is_flag=True, help="Return once a user can log in")
def up(data_dir: Path | None, port: int | None, detach: bool) -> None:
    """Start the hub (foreground unless --detach)."""
    from lakehub.server.up import UpError, serve
    from lakehub.server.up import detach as run_detached

    settings = settings_or_fail(data_dir=data_dir, port=port)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    def say(message: str, secret: bool = False) -> None:
        click.echo(message, err=message.startswith(("warning", "error")))

    try:
        code = run_detached(settings, say) if detach else serve(settings, say)
    except UpError as err:
        fail(str(err))
    sys.exit(code)


@main.command()
@DATA_DIR
def down(data_dir: Path | None) -> None:
    """Stop the hub and everything it started."""
    from lakehub.server.up import UpError
    from lakehub.server.up import down as stop

    settings = settings_or_fail(data_dir=data_dir)
    try:
        click.echo(stop(settings))
    except UpError as err:
        fail(str(err))


@main.command()
@DATA_DIR
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output")
def status(data_dir: Path | None, as_json: bool) -> None:
    """Show each component, its health, URL and log file.

    The hub is "ready" once a user can log in (the front door, the hub, the control plane); the
    other components are "starting" until each answers. The exit code is 0 once all answer.

    A hub whose supervisor died while some of its processes still run is "degraded", not
    "stopped": those processes are listed, and 'lakehub down' or 'lakehub up' stops them.
    """
    from lakehub.server.leftovers import hub_processes
    from lakehub.server.runtime import load_runtime
    from lakehub.server.supervisor import probe
    from lakehub.server.up import lock_is_free

    settings = settings_or_fail(data_dir=data_dir)
    rt = load_runtime(settings)
    running = rt is not None and not lock_is_free(settings)
    comps = {}
    if rt is not None and running:
        for name, c in rt.components.items():
            healthy = probe(c["health_url"])
            comps[name] = {
                "healthy": healthy,
                # not answering yet, and the hub has not settled: still starting, not down
                "state": "healthy" if healthy else ("down" if rt.settled else "starting"),
                "url": c["url"],
                "log": c["log"],
                "pid": c["pid"],
                "restarts": c["restarts"],
            }
    left = [] if running else hub_processes(settings.data_dir)
    state, reason = (rt.state, rt.reason) if rt and running else ("stopped", "")
    if left:
        state = "degraded"
        reason = f"supervisor not running, {len(left)} leftover processes"
        if rt is not None and probe(rt.front_url + "/hub/login"):
            reason += f" (the front door at {rt.front_url} still answers)"
    report = {
        "data_dir": str(settings.data_dir),
        "running": running,
        "state": state,
        "reason": reason,
        "url": rt.front_url if rt and running else None,
        "components": comps,
        "leftovers": left,
    }
    if as_json:
        echo_json(report)
    else:
        click.echo(
            f"LakeHub on {settings.data_dir}: {state}"
            + (f": {reason}" if reason else "")
            + (f" at {report['url']}" if report["url"] else "")
        )
        if left:
            click.echo("  'lakehub down' stops them; 'lakehub up' stops them and starts the hub")
        width = max(map(len, comps), default=0)
        for name, c in comps.items():
            mark = "DOWN" if c["state"] == "down" else c["state"]
            click.echo(f"  {name:<{width}} {mark:<8} {c['url']:<40} {c['log']}")
    if not running or not all(c["healthy"] for c in comps.values()):
        sys.exit(1)


@main.group()
def user() -> None:
    """Manage users (local administrator only)."""


@user.command("add")
@click.argument("name")
@click.option("--admin", is_flag=True, help="Make the user an administrator")
@DATA_DIR
def user_add(name: str, admin: bool, data_dir: Path | None) -> None:
    """Create a user and print a generated password once."""
    out = as_admin(data_dir, "POST", "/users", json={"name": name, "admin": admin})
    click.echo(f"created {out['name']}{' (admin)' if out['admin'] else ''}")
    click.echo(f"password: {out['password']}  (shown once)")


@user.command("list")
@DATA_DIR
def user_list(data_dir: Path | None) -> None:
    """List users with their status."""
    for u in as_admin(data_dir, "GET", "/users"):
        click.echo(f"{u['name']:<24} {u['status']:<8} {'admin' if u['admin'] else ''}")


@user.command("approve")
@click.argument("name")
@DATA_DIR
def user_approve(name: str, data_dir: Path | None) -> None:
    """Approve a pending sign-up."""
    click.echo(as_admin(data_dir, "POST", f"/users/{name}/approve")["detail"])


@user.command("remove")
@click.argument("name")
@DATA_DIR
def user_remove(name: str, data_dir: Path | None) -> None:
    """Delete a user, their lake identity and their servers (their data stays)."""
    as_admin(data_dir, "DELETE", f"/users/{name}")
    click.echo(f"removed {name}")


@user.command("password")
@click.argument("name")
@DATA_DIR
def user_password(name: str, data_dir: Path | None) -> None:
    """Give a user a new generated password, printed once (it is in the audit trail)."""
    import secrets

    password = secrets.token_urlsafe(12)
    as_admin(data_dir, "PATCH", f"/users/{name}", json={"password": password})
    click.echo(f"password: {password}  (shown once)")


@user.command("token")
@click.argument("name")
@click.option("--expires-in", type=int, default=None, help="Seconds until the token expires")
@DATA_DIR
def user_token(name: str, expires_in: int | None, data_dir: Path | None) -> None:
    """Print a new API token for a user."""
    out = as_admin(
        data_dir,
        "POST",
        f"/users/{name}/tokens",
        json={"note": "lakehub user token", "expires_in": expires_in},
    )
    click.echo(out["token"])


@main.group()
def group() -> None:
    """Manage groups (local administrator only)."""


@group.command("list")
@DATA_DIR
def group_list(data_dir: Path | None) -> None:
    for name, members in as_admin(data_dir, "GET", "/groups").items():
        click.echo(f"{name:<24} {', '.join(members)}")


@group.command("create")
@click.argument("name")
@DATA_DIR
def group_create(name: str, data_dir: Path | None) -> None:
    click.echo(as_admin(data_dir, "POST", "/groups", json={"name": name})["detail"])


@group.command("add")
@click.argument("group_name")
@click.argument("name")
@DATA_DIR
def group_add(group_name: str, name: str, data_dir: Path | None) -> None:
    click.echo(as_admin(data_dir, "PUT", f"/groups/{group_name}/members/{name}")["detail"])


@group.command("remove")
@click.argument("group_name")
@click.argument("name")
@DATA_DIR
def group_remove(group_name: str, name: str, data_dir: Path | None) -> None:
    as_admin(data_dir, "DELETE", f"/groups/{group_name}/members/{name}")
    click.echo(f"removed {name} from {group_name}")


@main.group()
def space() -> None:
    """Manage shared spaces and their grants (local administrator only)."""


@space.command("list")
@DATA_DIR
def space_list(data_dir: Path | None) -> None:
    for sp in as_admin(data_dir, "GET", "/spaces"):
        grants = ", ".join(f"{g['kind']} {g['name']}: {g['access']}" for g in sp["grants"])
        click.echo(f"{sp['name']:<20} {sp['bucket']:<26} owner {sp['owner']:<12} {grants}")


@space.command("create")
@click.argument("name")
@click.option("--owner", required=True, help="The user who owns the space")
@DATA_DIR
def space_create(name: str, owner: str, data_dir: Path | None) -> None:
    """Create a shared space (bucket space-NAME) owned by a user."""
    out = as_admin(data_dir, "POST", "/spaces", json={"name": name, "owner": owner})
    click.echo(f"created space {out['name']} (bucket {out['bucket']}, owner {out['owner']})")


def _grantee(user: str | None, group: str | None) -> dict[str, str]:
    if (user is None) == (group is None):
        fail("name exactly one of --user or --group", 2)
    return {"user": user} if user else {"group": group}  # type: ignore[dict-item]


@space.command("grant")
@click.argument("name")
@click.option("--user", default=None)
@click.option("--group", default=None)
@click.option("--access", type=click.Choice(["read", "write"]), required=True)
@DATA_DIR
def space_grant(
    name: str, user: str | None, group: str | None, access: str, data_dir: Path | None
) -> None:
    """Give a user or a group read or write access to a space."""
    as_admin(
        data_dir, "PUT", f"/spaces/{name}/grants", json={**_grantee(user, group), "access": access}
    )
    click.echo(f"{user or group} may now {access} space {name}")


@space.command("revoke")
@click.argument("name")
@click.option("--user", default=None)
@click.option("--group", default=None)
@DATA_DIR
def space_revoke(name: str, user: str | None, group: str | None, data_dir: Path | None) -> None:
    """Take a user's or a group's access to a space away."""
    as_admin(data_dir, "DELETE", f"/spaces/{name}/grants", params=_grantee(user, group))
    click.echo(f"{user or group} no longer has access to space {name}")


@main.group()
def quota() -> None:
    """Limit the bytes and objects of a user's own buckets or of a space (local administrator)."""


QUOTA_KIND = click.argument("kind", metavar="user|space")


@quota.command("set")
@QUOTA_KIND
@click.argument("name")
@click.option("--bytes", "size", default=None, help="Largest total size, e.g. 10GiB, 500MB")
@click.option("--objects", default=None, help="Most objects, e.g. 100000")
@DATA_DIR
def quota_set(
    kind: str, name: str, size: str | None, objects: str | None, data_dir: Path | None
) -> None:
    """Set (or replace) the quota of user NAME (buckets NAME-*) or of space NAME."""
    from lakehub.sizes import parse_size

    if size is None and objects is None:
        fail("give --bytes, --objects or both", 2)
    try:
        max_bytes = None if size is None else parse_size(size)
    except ValueError as err:
        fail(str(err), 2)
    if objects is not None and not objects.lstrip("-").isdigit():
        fail(f"invalid number of objects {objects!r}", 2)
    out = as_admin(
        data_dir,
        "PUT",
        f"/quotas/{kind}/{name}",
        json={"max_bytes": max_bytes, "max_objects": None if objects is None else int(objects)},
    )
    click.echo(f"quota set on {kind} {name}: {out['usage']}")


@quota.command("ls")
@DATA_DIR
def quota_ls(data_dir: Path | None) -> None:
    """List quotas with their usage."""
    quotas = as_admin(data_dir, "GET", "/quotas")
    if not quotas:
        click.echo("no quotas")
    for q in quotas:
        state = "BLOCKED" if q["blocked"] else "ok"
        click.echo(f"{q['kind']:<6} {q['name']:<20} {state:<8} {q['usage']}")


@quota.command("rm")
@QUOTA_KIND
@click.argument("name")
@DATA_DIR
def quota_rm(kind: str, name: str, data_dir: Path | None) -> None:
    """Remove a quota (writes are allowed again at once)."""
    as_admin(data_dir, "DELETE", f"/quotas/{kind}/{name}")
    click.echo(f"removed the quota on {kind} {name}")


main.add_command(lake)
main.add_command(connection)
main.add_command(env)
main.add_command(compute)
main.add_command(model)
main.add_command(endpoint)
main.add_command(job)
main.add_command(publish)
main.add_command(monitor)
for _command in (*COMMANDS, *STREAM_COMMANDS):
    main.add_command(_command)
