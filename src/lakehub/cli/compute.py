"""``lakehub compute ls|start|stop``: your own clusters, as you (``--hub``/``--token`` or the
notebook's environment), like ``lakehub server``; ``lakehub compute pool``: the clusters started
ahead of anyone's request, for the hub's operator (``--data-dir``)."""

from __future__ import annotations

import time
from pathlib import Path

import click

from lakehub.cli._common import DATA_DIR, HUB, TOKEN, as_admin, call, hub_client


@click.group()
def compute() -> None:
    """Your Dask and Spark clusters: list, start, stop."""


@compute.command("ls")
@HUB
@TOKEN
def compute_ls(hub: str | None, token: str | None) -> None:
    """Your clusters, with their dashboards."""
    from lakehub.compute import clusters

    with hub_client(hub, token) as c:
        found = call(clusters, client=c)
    if not found:
        click.echo("no clusters running")
    for x in found:
        age = f"{(time.time() - x['started']) / 60:.0f} min" if x["started"] else "-"
        click.echo(
            f"{x['kind']:<6} {x['name']:<34} {x['status']:<9} {age:>7}  {x['dashboard_url'] or '-'}"
        )


@compute.command("start")
@click.argument("kind", type=click.Choice(["dask", "spark"]))
@click.option("--workers", "-n", default=2, show_default=True, type=click.IntRange(0, 1000))
@click.option(
    "--cores",
    default=1.0,
    show_default=True,
    type=click.FloatRange(0, min_open=True),
    help="Per worker",
)
@click.option("--memory", default="2 GiB", show_default=True, help="Per worker")
@click.option("--connect", is_flag=True, help="Spark: with a Spark Connect server")
@HUB
@TOKEN
def compute_start(
    kind: str,
    workers: int,
    cores: float,
    memory: str,
    connect: bool,
    hub: str | None,
    token: str | None,
) -> None:
    """Start a cluster of KIND; connect to it from Python with its name."""
    body = {"workers": workers, "cores": cores, "memory": memory, "connect": connect}
    with hub_client(hub, token) as c:
        x = call(c.request, "POST", f"/api/compute/{kind}", json=body)
    click.echo(f"{x['kind']} cluster {x['name']} {x['status']}: {x['address']}")
    if x["dashboard_url"]:
        click.echo(f"dashboard: {x['dashboard_url']}")


@compute.command("stop")
@click.argument("kind", type=click.Choice(["dask", "spark"]))
@click.argument("name")
@HUB
@TOKEN
def compute_stop(kind: str, name: str, hub: str | None, token: str | None) -> None:
    """Stop one of your clusters."""
    from lakehub.compute import stop

    with hub_client(hub, token) as c:
        call(stop, kind, name, client=c)
    click.echo(f"stopping {kind} cluster {name}")


@compute.command("pool")
@DATA_DIR
def compute_pool(data_dir: Path | None) -> None:
    """The clusters started ahead of any request, nobody's yet: their shape and state. The pool
    fills in the background once the hub has settled, and empties under memory pressure."""
    found = as_admin(data_dir, "GET", "/compute-pool")
    if not found:
        click.echo("no cluster in the pool (its size: the setting compute_pool_spark)")
    for x in found:
        shape = f"{x['workers']} x {x['cores']:g} cores, {x['memory'] / 2**30:g} GiB"
        age = f"{(time.time() - x['started']) / 60:.0f} min" if x["started"] else "-"
        click.echo(f"{x['kind']:<6} {x['name']:<34} {x['status']:<9} {age:>7}  {shape}")
