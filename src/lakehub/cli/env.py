"""``lakehub env set | ls | rm``: environment variables for your notebook servers, from a shell.

Like ``lakehub connection``, it acts as you: inside a notebook server with no options, elsewhere
with ``--hub URL --token TOKEN`` (or ``LAKEHUB_API_URL`` / ``LAKEHUB_TOKEN``). A secret value is
never an argument (arguments show in ``ps`` and shell history): it is asked for without echo, or
read from standard input when that is not a terminal.
"""

from __future__ import annotations

import sys

import click

from lakehub.cli._common import HUB, TOKEN, call, fail, hub_client


def _read_value(name: str) -> str:
    if sys.stdin.isatty():
        value: str = click.prompt(
            f"value of {name}", hide_input=True, err=True, default="", show_default=False
        )
        return value
    value = sys.stdin.read()
    return value[:-1] if value.endswith("\n") else value  # what `echo` or a here-string adds


@click.group()
def env() -> None:
    """Environment variables for your notebook servers (secret ones are never shown)."""


@env.command("set")
@click.argument("name")
@click.option("--secret", is_flag=True, help="Never show the value again (it stays encrypted)")
@click.option(
    "--value",
    default=None,
    help="The value, for variables that are not secret [default: asked, or stdin]",
)
@HUB
@TOKEN
def set_(name: str, secret: bool, value: str | None, hub: str | None, token: str | None) -> None:
    """Create or replace NAME; it reaches your server at its next start."""
    if value is not None and secret:
        fail(
            "a secret value is never an argument (ps and shell history show those): "
            "leave out --value and type it at the prompt or pipe it in"
        )
    if value is None:
        value = _read_value(name)
    with hub_client(hub, token) as c:
        call(c.env.set, name, value, secret=secret)
    click.echo(f"set {name}" + (" (secret)" if secret else ""))


@env.command("ls")
@HUB
@TOKEN
def ls(hub: str | None, token: str | None) -> None:
    """List your variables; secret values show as (secret)."""
    with hub_client(hub, token) as c:
        rows = call(c.env.list)
    for r in rows:
        click.echo(f"{r['name']}=" + ("(secret)" if r["secret"] else r["value"]))


@env.command("rm")
@click.argument("name")
@HUB
@TOKEN
def rm(name: str, hub: str | None, token: str | None) -> None:
    """Delete NAME (running servers keep it until they restart)."""
    with hub_client(hub, token) as c:
        call(c.env.delete, name)
    click.echo(f"removed {name}")
