"""``lakehub publish FILE|s3://...`` and ``lakehub publish run|ls|show|set|link|rm``: notebooks
published read-only at a link (``--hub``/``--token`` or the notebook's environment)."""

from __future__ import annotations

from typing import Any

import click

from lakehub.cli._common import HUB, TOKEN, call, echo_json, fail, hub_client

AUDIENCE_HELP = "private, hub (every LakeHub user), public (anyone with the link) or space:NAME"


class _Publish(click.Group):
    """``lakehub publish report.ipynb`` is ``lakehub publish notebook report.ipynb``."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["notebook", *args]
        return super().parse_args(ctx, args)


@click.group(cls=_Publish)
def publish() -> None:
    """Publish a notebook (or a job run's output) as a read-only page at a link."""


def _expiry(value: str | None) -> Any:
    """``--expires``: a day (YYYY-MM-DD), a time, or ``never``; not given: unchanged."""
    if value is None:
        return ...
    return None if value == "never" else value


def _common(fn: Any) -> Any:
    for option in reversed(
        [
            click.option("--title", help="shown on its page [default: its name]"),
            click.option("--to", "to", help=AUDIENCE_HELP),
            click.option("--expires", help="YYYY-MM-DD (the end of that day, UTC) or never"),
        ]
    ):
        fn = option(fn)
    return fn


def _say(p: dict[str, Any]) -> None:
    v = p["versions"][0] if p["versions"] else None
    state = f"v{v['version']} {v['state']}" if v else "no version"
    note = f" ({v['message']})" if v and v["message"] else ""
    for_ = p["audience"] + (f" {p['space']}" if p["space"] else "")
    click.echo(f"{p['name']}: {state}{note}, for {for_}, {p['views']} views")
    click.echo(p["link"])


def _check_to(to: str | None) -> None:
    if to is not None and to.partition(":")[0] not in ("private", "hub", "public", "space"):
        fail(f"--to is {AUDIENCE_HELP}, not {to!r}")


@publish.command("notebook")
@click.argument("source")
@click.option("--name", help="its name [default: from the file's name]")
@_common
@click.option("--no-wait", is_flag=True, help="do not wait for its page")
@HUB
@TOKEN
def publish_notebook(
    source: str,
    name: str | None,
    title: str | None,
    to: str | None,
    expires: str | None,
    no_wait: bool,
    hub: str | None,
    token: str | None,
) -> None:
    """Publish SOURCE (a notebook file, or s3://bucket/key.ipynb in the lake); again: a new
    version at the same link."""
    import os

    from lakehub.publish import notebook

    _check_to(to)
    if not source.startswith("s3://") and not os.path.isfile(source):
        fail(f"no notebook file at {source}")
    with hub_client(hub, token) as c:
        page = call(
            notebook,
            source,
            name=name,
            title=title,
            to=to,
            expires=_expiry(expires),
            wait=0 if no_wait else 300,
            client=c,
        )
    _say(page)


@publish.command("run")
@click.argument("job")
@click.argument("run_id", type=int)
@click.option("--name", help="its name [default: the job's]")
@_common
@HUB
@TOKEN
def publish_run(
    job: str,
    run_id: int,
    name: str | None,
    title: str | None,
    to: str | None,
    expires: str | None,
    hub: str | None,
    token: str | None,
) -> None:
    """Publish the output notebook of run RUN_ID of your job JOB."""
    from lakehub.publish import run

    _check_to(to)
    with hub_client(hub, token) as c:
        page = call(
            run, job, run_id, name=name, title=title, to=to, expires=_expiry(expires), client=c
        )
    _say(page)


@publish.command("ls")
@click.option("--shared", is_flag=True, help="others', published for you")
@click.option("--json", "as_json", is_flag=True)
@HUB
@TOKEN
def publish_ls(shared: bool, as_json: bool, hub: str | None, token: str | None) -> None:
    """Your published notebooks (or, with --shared, those published for you)."""
    from lakehub.publish import list as pages

    with hub_client(hub, token) as c:
        found = call(pages, shared=shared, client=c)
    if as_json:
        echo_json(found)
        return
    if not found:
        click.echo("nothing published" + (" for you" if shared else ""))
    for p in found:
        owner = f" by {p['owner']}" if shared else ""
        click.echo(f"{p['name']:<24} {p['audience']:<8} {p['views']:>6} views  {p['link']}{owner}")


@publish.command("show")
@click.argument("name")
@HUB
@TOKEN
def publish_show(name: str, hub: str | None, token: str | None) -> None:
    """One of yours, with every version."""
    from lakehub.publish import get

    with hub_client(hub, token) as c:
        p = call(get, name, client=c)
    _say(p)
    for v in p["versions"]:
        note = f": {v['message']}" if v["message"] else ""
        click.echo(f"  v{v['version']} {v['state']} {v['created_at'][:16]} {v['source']}{note}")


@publish.command("set")
@click.argument("name")
@_common
@HUB
@TOKEN
def publish_set(
    name: str,
    title: str | None,
    to: str | None,
    expires: str | None,
    hub: str | None,
    token: str | None,
) -> None:
    """Change its title, audience or expiry."""
    from lakehub.publish import update

    _check_to(to)
    with hub_client(hub, token) as c:
        p = call(update, name, title=title, to=to, expires=_expiry(expires), client=c)
    _say(p)


@publish.command("link")
@click.argument("name")
@HUB
@TOKEN
def publish_link(name: str, hub: str | None, token: str | None) -> None:
    """A new link for its page: the old one stops working."""
    from lakehub.publish import new_link

    with hub_client(hub, token) as c:
        _say(call(new_link, name, client=c))


@publish.command("rm")
@click.argument("name")
@HUB
@TOKEN
def publish_rm(name: str, hub: str | None, token: str | None) -> None:
    """Unpublish: its page goes, with every version."""
    from lakehub.publish import remove

    with hub_client(hub, token) as c:
        call(remove, name, client=c)
    click.echo(f"unpublished {name}")
