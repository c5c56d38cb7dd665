"""What each running server was started with (environment, size, idle timeout, limits), as the
spawner decided it: one JSON file per server under ``run/servers/``, written by the hub's account
only. The culler reads a server's idle timeout here; the control plane shows it to its user.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def _file(run_dir: Path, user: str, server: str) -> Path:
    return run_dir / "servers" / f"{user}--{server or 'default'}.json"


def write(run_dir: Path, user: str, server: str, record: dict[str, Any]) -> None:
    path = _file(run_dir, user, server)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record))
    os.replace(tmp, path)


def read(run_dir: Path, user: str, server: str) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads(_file(run_dir, user, server).read_text())
        return data
    except (FileNotFoundError, ValueError):
        return {}


def remove(run_dir: Path, user: str, server: str) -> None:
    _file(run_dir, user, server).unlink(missing_ok=True)


def from_url(url: str) -> tuple[str, str]:
    """(user, server) from a server's URL path, ``/user/<name>/`` or ``/user/<name>/<server>/``
    (user and server names are plain: see ``users.valid_name``)."""
    parts = [p for p in url.split("/") if p]
    i = parts.index("user") if "user" in parts else -1
    user = parts[i + 1] if 0 <= i < len(parts) - 1 else ""
    server = parts[i + 2] if i >= 0 and len(parts) > i + 2 else ""
    return user, server
