"""Notebook commands.

- ``lakehub server ls|start|stop``: your own servers, as you (``--hub``/``--token`` or the
  notebook's environment), like ``lakehub env``.
- ``lakehub environment``, ``lakehub size`` and ``lakehub policy``: what servers are made of and
  who may use what, as the local administrator (``--data-dir``), like ``lakehub quota``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from lakehub.cli._common import DATA_DIR, HUB, TOKEN, as_admin, call, echo_json, fail, hub_client


def _size(text: str) -> int:
    from lakehub.sizes import parse_size

    try:
        return parse_size(text)
    except ValueError as err:
        fail(str(err), 2)


def _human(n: int | None) -> str:
    from lakehub.sizes import human

    return "-" if n is None else human(n)


# your servers --------------------------------------------------------------------------------
@click.group()
def server() -> None:
    """Your notebook servers: list, start (with an environment and a size), stop."""


@server.command("ls")
@HUB
@TOKEN
def server_ls(hub: str | None, token: str | None) -> None:
    """Your servers, and when each stops if it stays idle."""
    with hub_client(hub, token) as c:
        servers = call(c.servers.list)
    if not servers:
        click.echo("no servers running")
    for s in servers:
        state = "ready" if s["ready"] else (s["pending"] or "stopped")
        stops = f"stops at {s['cull_at'][11:16]} UTC if idle" if s["cull_at"] else ""
        click.echo(
            f"{s['name']:<16} {state:<8} {s['environment'] or '-':<14} "
            f"{s['size'] or '-':<8} {stops}"
        )


@server.command("start")
@click.argument("name", default="default")
@click.option("--environment", "-e", default=None, help="[default: yours, see 'options']")
@click.option("--size", "-s", default=None, help="[default: yours]")
@HUB
@TOKEN
def server_start(
    name: str, environment: str | None, size: str | None, hub: str | None, token: str | None
) -> None:
    """Start server NAME ('default' is your unnamed one) and wait until it is ready."""
    with hub_client(hub, token) as c:
        s = call(c.servers.start, name, environment=environment, size=size)
        url = c.url.removesuffix("/services/lakehub") + s["url"]
    click.echo(f"server {s['name']} ready: {s['environment']}, {s['size']}, at {url}")


@server.command("stop")
@click.argument("name", default="default")
@HUB
@TOKEN
def server_stop(name: str, hub: str | None, token: str | None) -> None:
    """Stop server NAME; your files stay."""
    with hub_client(hub, token) as c:
        call(c.servers.stop, name)
    click.echo(f"stopping server {name}")


@server.command("options")
@HUB
@TOKEN
def server_options(hub: str | None, token: str | None) -> None:
    """The environments and sizes you may pick, and your quotas."""
    with hub_client(hub, token) as c:
        o = call(c.servers.options)
    for e in o["environments"]:
        mark = "*" if e["name"] == o["default_environment"] else " "
        state = "ready" if e["usable"] else e["status"]
        click.echo(f"{mark} environment {e['name']:<14} {state:<9} {e['description']}")
    for z in o["sizes"]:
        mark = "*" if z["name"] == o["default_size"] else " "
        click.echo(f"{mark} size        {z['name']:<14} {z['cpus']:g} CPU, {_human(z['memory'])}")
    click.echo(
        f"quota: {o['max_servers']} server(s), memory {_human(o['max_memory'])}; "
        f"idle timeout {o['idle_timeout']} s"
    )


# environments (administrators) ---------------------------------------------------------------
@click.group()
def environment() -> None:
    """Notebook environments: specs, builds and their logs (local administrator)."""


@environment.command("ls")
@DATA_DIR
def environment_ls(data_dir: Path | None) -> None:
    for e in as_admin(data_dir, "GET", "/environments"):
        state = e["status"] + (f" ({e['progress']})" if e["progress"] else "")
        usable = "usable" if e["usable"] else "not usable yet"
        click.echo(f"{e['name']:<14} {state:<40} {usable:<15} {e['description']}")


@environment.command("show")
@click.argument("name")
@DATA_DIR
def environment_show(name: str, data_dir: Path | None) -> None:
    """The spec, the build's state and everything inside it, with versions."""
    e = as_admin(data_dir, "GET", f"/environments/{name}")
    echo_json(e)


@environment.command("set")
@click.argument("name")
@click.option("--description", default=None)
@click.option("--python", default=None, help="e.g. 3.11 [default: 3.11, or unchanged]")
@click.option(
    "--package",
    "-p",
    "packages",
    multiple=True,
    help="A requirement like 'pandas>=2.2'; repeat; replaces the list",
)
@DATA_DIR
def environment_set(
    name: str,
    description: str | None,
    python: str | None,
    packages: tuple[str, ...],
    data_dir: Path | None,
) -> None:
    """Add environment NAME or change its spec; it is built in the background."""
    body = {
        "description": description,
        "python": python,
        "packages": list(packages) if packages else None,
    }
    e = as_admin(data_dir, "PUT", f"/environments/{name}", json=body)
    click.echo(f"environment {name}: {e['status']} (see 'lakehub environment log {name}')")


@environment.command("build")
@click.argument("name")
@DATA_DIR
def environment_build(name: str, data_dir: Path | None) -> None:
    """Build NAME again from its spec."""
    e = as_admin(data_dir, "POST", f"/environments/{name}/build")
    click.echo(f"environment {name}: {e['status']}")


@environment.command("log")
@click.argument("name")
@DATA_DIR
def environment_log(name: str, data_dir: Path | None) -> None:
    """The log of NAME's latest build."""
    click.echo(as_admin(data_dir, "GET", f"/environments/{name}/log"), nl=False)


@environment.command("rm")
@click.argument("name")
@DATA_DIR
def environment_rm(name: str, data_dir: Path | None) -> None:
    as_admin(data_dir, "DELETE", f"/environments/{name}")
    click.echo(f"removed environment {name} (running servers keep their build)")


# sizes ---------------------------------------------------------------------------------------
@click.group()
def size() -> None:
    """Server sizes: CPU and memory limits, kernels included (local administrator)."""


@size.command("ls")
@DATA_DIR
def size_ls(data_dir: Path | None) -> None:
    for z in as_admin(data_dir, "GET", "/sizes"):
        click.echo(
            f"{z['name']:<12} {z['cpus']:g} CPU  {_human(z['memory']):<10} {z['description']}"
        )


@size.command("set")
@click.argument("name")
@click.option("--cpus", type=float, required=True)
@click.option("--memory", required=True, help="e.g. 4GiB")
@click.option("--description", default="")
@DATA_DIR
def size_set(name: str, cpus: float, memory: str, description: str, data_dir: Path | None) -> None:
    body = {"cpus": cpus, "memory": _size(memory), "description": description}
    as_admin(data_dir, "PUT", f"/sizes/{name}", json=body)
    click.echo(f"size {name}: {cpus:g} CPU, {memory}")


@size.command("rm")
@click.argument("name")
@DATA_DIR
def size_rm(name: str, data_dir: Path | None) -> None:
    as_admin(data_dir, "DELETE", f"/sizes/{name}")
    click.echo(f"removed size {name}")


# policies ------------------------------------------------------------------------------------
@click.group()
def policy() -> None:
    """Per-group choices, defaults, quotas and idle timeouts; per-user quotas."""


def _who(user: str | None, group: str | None) -> str:
    if bool(user) == bool(group):
        fail("give --group NAME or --user NAME", 2)
    return f"user/{user}" if user else f"group/{group}"


def _names(text: str | None) -> list[str] | None:
    return None if text is None else [n for n in text.split(",") if n]


@policy.command("set")
@click.option("--group", default=None)
@click.option("--user", default=None)
@click.option("--environments", default=None, help="Allowed, comma-separated ('' clears)")
@click.option("--sizes", default=None, help="Allowed, comma-separated ('' clears)")
@click.option("--default-environment", default=None)
@click.option("--default-size", default=None)
@click.option("--max-servers", type=int, default=None)
@click.option("--max-memory", default=None, help="Total memory of running servers, e.g. 16GiB")
@click.option("--idle-timeout", type=int, default=None, help="Seconds; 0: never stop")
@DATA_DIR
def policy_set(
    group: str | None,
    user: str | None,
    environments: str | None,
    sizes: str | None,
    default_environment: str | None,
    default_size: str | None,
    max_servers: int | None,
    max_memory: str | None,
    idle_timeout: int | None,
    data_dir: Path | None,
) -> None:
    """Set some fields of a group's or a user's policy (others stay as they were)."""
    who = _who(user, group)
    body: dict[str, Any] = {}
    if environments is not None:
        body["environments"] = _names(environments) or None
    if sizes is not None:
        body["sizes"] = _names(sizes) or None
    for key, value in (
        ("default_environment", default_environment),
        ("default_size", default_size),
        ("max_servers", max_servers),
        ("cull_timeout", idle_timeout),
    ):
        if value is not None:
            body[key] = value
    if max_memory is not None:
        body["max_memory"] = _size(max_memory)
    if not body:
        fail("nothing to set: see --help", 2)
    as_admin(data_dir, "PUT", f"/notebook-policies/{who}", json=body)
    click.echo(f"policy of {who.replace('/', ' ')} set")


@policy.command("ls")
@DATA_DIR
def policy_ls(data_dir: Path | None) -> None:
    rows = as_admin(data_dir, "GET", "/notebook-policies")
    if not rows:
        click.echo("no policies: everyone may use every environment and size")
    for p in rows:
        fields = {k: v for k, v in p.items() if k not in ("kind", "name") and v is not None}
        click.echo(f"{p['kind']:<6} {p['name']:<16} " + json.dumps(fields))


@policy.command("rm")
@click.option("--group", default=None)
@click.option("--user", default=None)
@DATA_DIR
def policy_rm(group: str | None, user: str | None, data_dir: Path | None) -> None:
    who = _who(user, group)
    as_admin(data_dir, "DELETE", f"/notebook-policies/{who}")
    click.echo(f"removed the policy of {who.replace('/', ' ')}")


COMMANDS = (server, environment, size, policy)
