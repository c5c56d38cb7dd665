"""Idle culling: ``jupyterhub-idle-culler`` as a managed JupyterHub service, and what users see.

JupyterHub starts ``python -m lakehub.server.notebooks.culling --timeout=S --cull-every=S`` with a
token that may list users, read their activity and servers, and stop servers (see
``jupyterhub_config.py``); the culler dies with that JupyterHub (:func:`die_with_hub`). It is the
upstream culler unchanged, except that its decision hook also appends one line per culled server
to ``run/culls.log``, which the metrics count. Culling stops a server only: the user, their home
and their files stay.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from lakehub.server.notebooks import records

CULLS_FILE = "culls.log"
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def culls_file(run_dir: Path) -> Path:
    return run_dir / CULLS_FILE


def cull_count(run_dir: Path) -> int:
    """How many servers the culler has stopped since this hub's data directory was made."""
    try:
        with culls_file(run_dir).open("rb") as f:
            return sum(1 for _ in f)
    except FileNotFoundError:
        return 0


def _parse(stamp: str | None) -> datetime | None:
    if not stamp:
        return None
    value = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def idle_info(server: dict[str, Any] | None, timeout: int) -> dict[str, Any] | None:
    """For a running server (JupyterHub's server model): its last activity and when it will be
    stopped if it stays idle. ``cull_at`` is None when culling is off."""
    if not server:
        return None
    last = _parse(server.get("last_activity")) or _parse(server.get("started"))
    cull_at = last + timedelta(seconds=timeout) if (last and timeout) else None
    return {"last_activity": last, "idle_timeout": timeout, "cull_at": cull_at}


def _record_and_decide(
    *, inactive: timedelta | None, inactive_limit: int, server: dict[str, Any], **kwargs: Any
) -> bool:
    """The culler's decision: the upstream rule with the server's own idle timeout (chosen by
    its user's policy when it started; 0: never). A server it will stop is written down."""
    run_dir = Path(os.environ["LAKEHUB_DATA_DIR"]) / "run"
    limit = records.read(run_dir, *records.from_url(server.get("url") or "")).get(
        "cull_timeout", inactive_limit
    )
    if inactive is None or not limit or inactive.total_seconds() < limit:
        return False
    line = f"{int(time.time())} {server.get('url', '')} {int(inactive.total_seconds())}\n"
    with culls_file(run_dir).open("a") as f:
        f.write(line)
    return True


def die_with_hub() -> None:
    """Ask Linux to kill this process when JupyterHub (its parent) dies, however it dies; exit
    now if it is already gone. Otherwise a killed hub would leave this culler running beside the
    one its restart starts."""
    hub_pid = int(os.environ.get("LAKEHUB_HUB_PID") or 0)
    if sys.platform == "linux":
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if hub_pid and os.getppid() != hub_pid:  # the hub died before the line above
        sys.exit("idle culler: JupyterHub is gone; exiting")


def main() -> None:
    die_with_hub()
    os.nice(10)  # a background check: JupyterHub, the proxy and the servers come first
    from jupyterhub_idle_culler import IdleCuller

    # no config file from the working directory: everything comes from the command line
    IdleCuller.launch_instance(config_file="", cull_arbiter_hook=_record_and_decide)


if __name__ == "__main__":
    main()
