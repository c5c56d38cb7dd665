"""``lakehub stream`` and ``lakehub source``: ingestion, managed by the hub's administrator."""

from __future__ import annotations

from pathlib import Path

import click

from lakehub.cli._common import as_admin, data_dir_option, echo_json

DATA_DIR = data_dir_option("The hub's data directory")


@click.group()
def stream() -> None:
    """Streams: where Forward and HTTP data lands (records datasets or raw bytes)."""


@stream.command("create")
@click.argument("name")
@click.option("--owner", required=True, help="The user the stream belongs to")
@click.option("--tag", "tags", multiple=True, required=True, help="Tag pattern (repeatable)")
@click.option("--kind", type=click.Choice(["records", "raw"]), default="records")
@click.option("--path", default=None, help="s3://bucket/prefix [default: <owner>-home/streams/]")
@DATA_DIR
def stream_create(
    name: str, owner: str, tags: tuple[str, ...], kind: str, path: str | None, data_dir: Path | None
) -> None:
    body = {"name": name, "owner": owner, "tags": list(tags), "kind": kind, "path": path}
    out = as_admin(data_dir, "POST", "/streams", json=body)
    click.echo(f"stream {out['name']} ({out['kind']}) at {out['path']} takes {', '.join(tags)}")


@stream.command("list")
@click.option("--json", "as_json", is_flag=True)
@DATA_DIR
def stream_list(as_json: bool, data_dir: Path | None) -> None:
    out = as_admin(data_dir, "GET", "/streams")
    if as_json:
        echo_json(out)
        return
    for s in out:
        click.echo(
            f"{s['name']:<20} {s['kind']:<8} {s['owner']:<12} records={s['moved_records']}"
            f" lag={s['lag_seconds']:.1f}s errors={s['errors']} {s['path']}"
        )


@stream.command("rm")
@click.argument("name", metavar="[OWNER/]NAME")
@DATA_DIR
def stream_rm(name: str, data_dir: Path | None) -> None:
    """Stop routing into a stream (OWNER/ when several people have one so called)."""
    as_admin(data_dir, "DELETE", f"/streams/{name}")
    click.echo(f"stream {name} removed (its data stays in the lake)")


@click.group()
def source() -> None:
    """Sources: who may push data (a token for HTTP, a shared key for Forward)."""


@source.command("add")
@click.argument("name")
@click.option("--owner", required=True)
@click.option("--tag", "tags", multiple=True, required=True, help="Tag pattern (repeatable)")
@click.option("--no-shared-key", is_flag=True, help="Forward clients send without a handshake")
@click.option("--max-bytes-per-s", type=int, default=None)
@click.option("--max-message-bytes", type=int, default=16 * 2**20)
@DATA_DIR
def source_add(
    name: str,
    owner: str,
    tags: tuple[str, ...],
    no_shared_key: bool,
    max_bytes_per_s: int | None,
    max_message_bytes: int,
    data_dir: Path | None,
) -> None:
    body = {
        "name": name,
        "owner": owner,
        "tags": list(tags),
        "shared_key": not no_shared_key,
        "max_bytes_per_s": max_bytes_per_s,
        "max_message_bytes": max_message_bytes,
    }
    out = as_admin(data_dir, "POST", "/sources", json=body)
    click.echo(f"source {name} for {owner}: token: {out['token']}")
    if out["key"]:
        click.echo(f"shared key: {out['key']}")
    click.echo("(shown once)")


@source.command("list")
@DATA_DIR
def source_list(data_dir: Path | None) -> None:
    for s in as_admin(data_dir, "GET", "/sources"):
        key = "shared key" if s["shared_key"] else "no key"
        click.echo(f"{s['name']:<20} {s['owner']:<12} {key:<10} {', '.join(s['tags'])}")


@source.command("rm")
@click.argument("name", metavar="[OWNER/]NAME")
@DATA_DIR
def source_rm(name: str, data_dir: Path | None) -> None:
    """Refuse a source's token and key from now on (OWNER/ when several have one so called)."""
    as_admin(data_dir, "DELETE", f"/sources/{name}")
    click.echo(f"source {name} removed")


COMMANDS = (stream, source)
