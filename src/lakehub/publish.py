"""Notebooks published read-only, each at a link of its own::

    import lakehub.publish as publish
    page = publish.notebook("report.ipynb", to="public")       # waits until its page is ready
    page["link"]                                                 # open it, send it
    publish.notebook("report.ipynb")                             # again: version 2, same link
    publish.notebook("s3://ann-home/reports/q3.ipynb", name="q3", to="space:analysts")
    publish.run("nightly", 42, name="nightly-report")            # a job run's output
    publish.update("report", expires="2027-01-31")               # or expires=None: never
    publish.new_link("report")                                   # the old link stops working
    publish.remove("report")

``to``: ``private`` (you), ``space:NAME`` (its readers), ``hub`` (every LakeHub user, the
default) or ``public`` (anyone with the link). Nothing in a notebook runs on its page.
"""

from __future__ import annotations

import builtins
import os
import re
import time
from datetime import date, datetime
from pathlib import Path
from types import EllipsisType
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from lakehub.client import API_PREFIX, LakeHubError, default

if TYPE_CHECKING:
    from lakehub.client import Client

BASE = "/api/published"
Expiry = str | date | datetime | None


def _path(name: str) -> str:
    return f"{BASE}/{quote(name, safe='')}"


def _options(title: str | None, to: str | None, expires: Expiry | EllipsisType) -> dict[str, Any]:
    opts: dict[str, Any] = {}
    if title is not None:
        opts["title"] = title
    if to is not None:
        audience, _, space = to.partition(":")
        opts["audience"] = audience
        if space:
            opts["space"] = space
    if expires is not ...:
        if isinstance(expires, date) and not isinstance(expires, datetime):
            expires = f"{expires.isoformat()}T23:59:59Z"
        elif isinstance(expires, str) and re.fullmatch(r"\d{4}-\d\d-\d\d", expires):
            expires = f"{expires}T23:59:59Z"  # the end of that day, UTC
        opts["expires_at"] = expires.isoformat() if isinstance(expires, datetime) else expires
    return opts


def _with_link(page: dict[str, Any], c: Client) -> dict[str, Any]:
    """``link``: the page as a browser opens it. In a notebook server (or a job) the client talks
    to the API directly; a browser goes through the hub's front door (``LAKEHUB_FRONT_URL``)."""
    base = c.url
    api, front = os.environ.get("LAKEHUB_API_URL", ""), os.environ.get("LAKEHUB_FRONT_URL", "")
    if api and front and base.startswith(api.rstrip("/")):
        base = front.rstrip("/") + API_PREFIX
    page["link"] = f"{base}/{page['url']}"
    return page


def _name_of(source: str) -> str:
    stem = re.sub(r"[^a-z0-9-]+", "-", Path(source).stem.lower()).strip("-")
    return stem[:63] or "notebook"


def list(shared: bool = False, client: Client | None = None) -> builtins.list[dict[str, Any]]:  # noqa: A001
    """Yours; with ``shared``, others' published for every user or a space of yours."""
    c = default(client)
    found = c.request("GET", BASE, params={"shared": shared})
    return [_with_link(p, c) for p in found]


def get(name: str, client: Client | None = None) -> dict[str, Any]:
    c = default(client)
    return _with_link(c.request("GET", _path(name)), c)


def notebook(
    source: str | Path,
    name: str | None = None,
    title: str | None = None,
    to: str | None = None,
    expires: Expiry | EllipsisType = ...,
    wait: float = 300.0,
    client: Client | None = None,
) -> dict[str, Any]:
    """Publish the notebook at ``source`` (a file here, or ``s3://bucket/key.ipynb`` in the
    lake), as ``name`` (default: from its file name); waits up to ``wait`` seconds for its
    page (0: not at all)."""
    c = default(client)
    src = str(source)
    name = name or _name_of(src)
    opts = _options(title, to, expires)
    if src.startswith("s3://"):
        out = c.request("POST", BASE, json={"name": name, "lake": src, **opts})
    else:
        with open(src, "rb") as f:
            headers = {"Content-Type": "application/x-ipynb+json"}
            params = {k: v for k, v in opts.items() if v is not None}  # a new one never expires
            out = c.request("PUT", _path(name), content=f, params=params, headers=headers)
    return _until_rendered(out, wait, c)


def run(
    job: str,
    run_id: int,
    name: str | None = None,
    title: str | None = None,
    to: str | None = None,
    expires: Expiry | EllipsisType = ...,
    wait: float = 300.0,
    client: Client | None = None,
) -> dict[str, Any]:
    """Publish the output notebook of run ``run_id`` of your job ``job``."""
    c = default(client)
    body = {"name": name or job, "job": job, "run": run_id, **_options(title, to, expires)}
    return _until_rendered(c.request("POST", BASE, json=body), wait, c)


def update(
    name: str,
    title: str | None = None,
    to: str | None = None,
    expires: Expiry | EllipsisType = ...,
    client: Client | None = None,
) -> dict[str, Any]:
    """Change its title, audience (``to``) or expiry (``None``: never)."""
    c = default(client)
    out = c.request("PATCH", _path(name), json=_options(title, to, expires))
    return _with_link(out, c)


def new_link(name: str, client: Client | None = None) -> dict[str, Any]:
    """A new link for its page; the old one stops working at once."""
    c = default(client)
    return _with_link(c.request("POST", f"{_path(name)}/link"), c)


def remove(name: str, client: Client | None = None) -> None:
    """Unpublish: its page goes, with every version."""
    default(client).request("DELETE", _path(name))


def _until_rendered(page: dict[str, Any], wait: float, c: Client) -> dict[str, Any]:
    deadline = time.monotonic() + wait
    number = page["versions"][0]["version"]
    while wait:
        newest = page["versions"][0]
        if newest["version"] == number and newest["state"] == "failed":
            raise LakeHubError(422, f"{page['name']} v{number}: {newest['message']}")
        if newest["state"] == "ready":
            break
        if time.monotonic() > deadline:
            raise LakeHubError(504, f"{page['name']} v{number} not rendered in {wait:.0f} s")
        time.sleep(0.3)
        page = c.request("GET", _path(page["name"]))
    return _with_link(page, c)
