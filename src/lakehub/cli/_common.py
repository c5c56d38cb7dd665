"""What several command groups share: options, one-line failures and the two ways to the API.

Rules: an error is one line on stderr (``error: ...``) and a non-zero exit (1, or 2 for bad
input). Administrator commands (``--data-dir``) call the running hub's API as the local
administrator (`admin`); user commands (``--hub``/``--token``, or the notebook's environment)
call it as the user (`hub_client`, `call`). This module imports no command group.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click
import httpx

if TYPE_CHECKING:  # the server's modules load only for the administrator's commands: a
    # notebook's terminal runs the user's commands with the SDK alone
    from lakehub.server.config import Settings

DATA_DIR_HELP = "The hub's data directory [default: ./lakehub-data, or LAKEHUB_DATA_DIR]"


def data_dir_option(help: str = DATA_DIR_HELP) -> Any:
    """The ``--data-dir`` option of the administrator's commands."""
    return click.option(
        "--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None, help=help
    )


DATA_DIR = data_dir_option()
HUB = click.option("--hub", default=None, help="The hub's URL [default: from the environment]")
TOKEN = click.option("--token", default=None, help="Your API token [default: LAKEHUB_TOKEN]")


def fail(message: str, code: int = 1) -> NoReturn:
    """End the command with ``error: message`` on stderr and exit status ``code``."""
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def settings_or_fail(**overrides: Any) -> Settings:
    from lakehub.server.config import SettingsError, load_settings

    try:
        return load_settings(**overrides)
    except SettingsError as err:
        fail(str(err), 2)


def echo_json(data: Any) -> None:
    """Machine-readable output: indented JSON (dates and the like as strings)."""
    click.echo(json.dumps(data, indent=2, default=str))


def api(settings: Settings, method: str, path: str, **kw: Any) -> Any:
    """Call the running hub's API as the local administrator."""
    from lakehub.server.runtime import load_runtime, tokens

    rt = load_runtime(settings)
    if rt is None or rt.state != "ready":
        fail(f"no running hub on {settings.data_dir}: start it with 'lakehub up'")
    try:
        token = tokens(settings).service
    except PermissionError:
        fail("only the account that runs the hub may manage it")
    try:
        resp = httpx.request(
            method,
            f"{rt.api_url}/api{path}",
            timeout=60,
            headers={"Authorization": f"token {token}"},
            **kw,
        )
    except httpx.TransportError:
        fail(f"the hub's API at {rt.api_url} is not answering")
    if resp.status_code >= 400:
        try:
            detail = resp.json().get("detail", resp.text)
        except ValueError:
            detail = resp.text
        if isinstance(detail, list):  # validation errors
            detail = "; ".join(d.get("msg", str(d)) for d in detail)
        fail(str(detail))
    return resp.json() if resp.content else None


def as_admin(data_dir: Path | None, method: str, path: str, **kw: Any) -> Any:
    """`api` on the hub of ``data_dir`` (``--data-dir``, else the default)."""
    return api(settings_or_fail(data_dir=data_dir), method, path, **kw)


def hub_client(hub: str | None, token: str | None) -> Any:
    """A `lakehub.client.Client` acting as you (``--hub``/``--token`` or the environment)."""
    from lakehub.client import LakeHubError, connect

    try:
        return connect(hub, token)
    except LakeHubError as err:
        fail(err.detail)


def call(fn: Any, *args: Any, **kw: Any) -> Any:
    """``fn(*args, **kw)``; the hub's refusal ends the command with its reason on one line."""
    from lakehub.client import LakeHubError

    try:
        return fn(*args, **kw)
    except LakeHubError as err:
        detail = err.detail
        if isinstance(detail, str) and detail.startswith("[{"):  # validation errors
            detail = "invalid request"
        fail(" ".join(str(detail).split()))
