"""``lakehub connection add | ls | rm``: your external S3 connections, from a shell.

Like ``lakehub lake``, it acts as you: inside a notebook server with no options, elsewhere with
``--hub URL --token TOKEN`` (or ``LAKEHUB_API_URL`` / ``LAKEHUB_TOKEN``). The secret key is
never an argument (arguments show in ``ps`` and shell history): it is read from
``LAKEHUB_CONNECTION_SECRET`` or asked for without echo.
"""

from __future__ import annotations

import os
import sys

import click

from lakehub.cli._common import HUB, TOKEN, call, fail, hub_client

SECRET_ENV = "LAKEHUB_CONNECTION_SECRET"


@click.group()
def connection() -> None:
    """Your external S3 connections (AWS, Ceph, another SeaweedFS)."""


@connection.command("add")
@click.argument("name")
@click.option("--endpoint", required=True, help="The S3 endpoint's URL (http:// or https://)")
@click.option("--access-key", required=True, help="The access key ID")
@click.option("--region", default="", help="The region to sign for [default: us-east-1]")
@click.option("--bucket", default="", help="The one bucket these keys may use, if any")
@click.option("--no-verify", is_flag=True, help="Save without trying the keys on the endpoint")
@HUB
@TOKEN
def add(
    name: str,
    endpoint: str,
    access_key: str,
    region: str,
    bucket: str,
    no_verify: bool,
    hub: str | None,
    token: str | None,
) -> None:
    """Register a connection; the secret key comes from LAKEHUB_CONNECTION_SECRET or a prompt."""
    secret = os.environ.get(SECRET_ENV)
    if not secret:
        if not sys.stdin.isatty():
            fail(f"no secret key: set {SECRET_ENV} or run in a terminal to be asked for it")
        secret = click.prompt("secret access key", hide_input=True, err=True)
    with hub_client(hub, token) as c:
        out = call(
            c.connections.create,
            name,
            endpoint,
            access_key,
            secret,
            region=region,
            bucket=bucket,
            verify=not no_verify,
        )
    checked = "not checked" if no_verify else "credentials checked"
    click.echo(f"added connection {out['name']} -> {out['endpoint_url']} ({checked})")


@connection.command("ls")
@HUB
@TOKEN
def ls(hub: str | None, token: str | None) -> None:
    """List your connections (never their secrets)."""
    with hub_client(hub, token) as c:
        rows = call(c.connections.list)
    for r in rows:
        click.echo(
            f"{r['name']:<20} {r['endpoint_url']:<40} {r['region']:<12} "
            f"{r['bucket'] or '-':<20} {r['access_key_id']}"
        )


@connection.command("rm")
@click.argument("name")
@HUB
@TOKEN
def rm(name: str, hub: str | None, token: str | None) -> None:
    """Forget a connection (the data at the endpoint stays)."""
    with hub_client(hub, token) as c:
        call(c.connections.delete, name)
    click.echo(f"removed connection {name}")
