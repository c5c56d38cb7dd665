"""Jobs: a notebook or a script the hub runs as you, on a schedule or by hand, in an environment
and a size of yours, never failing silently::

    import lakehub.jobs as jobs
    jobs.create("nightly", "report.ipynb", schedule="cron", expr="30 3 * * *",
                timezone="Europe/Paris", parameters={"day": "yesterday"}, retries=2)
    run = jobs.run("nightly", parameters={"day": "2026-12-01"})   # now, by hand
    jobs.wait("nightly", run["id"])                                # until it has ended
    jobs.output("nightly", run["id"])                              # the executed notebook
    jobs.parameters()       # inside a job's script: the run's parameters
    jobs.create("clean", "clean.py", after=["nightly"])          # a pipeline's next step
    jobs.backfill("nightly", "2026-11-01T00:00Z", "2026-11-30T23:59Z")
    jobs.rerun("clean", 57)                                       # again, from the failed step

A notebook's parameters are injected by papermill after its cell tagged ``parameters``.
"""

from __future__ import annotations

import builtins
import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from lakehub.client import LakeHubError, default

if TYPE_CHECKING:
    from lakehub.client import Client

BASE = "/api/jobs"
ENDED = ("succeeded", "failed", "lost", "missed", "skipped", "cancelled")


def _path(name: str) -> str:
    return f"{BASE}/{quote(name, safe='')}"


def parameters() -> dict[str, Any]:
    """The parameters of the run this script is (empty outside a job)."""
    found: dict[str, Any] = json.loads(os.environ.get("LAKEHUB_JOB_PARAMETERS") or "{}")
    return found


def list(client: Client | None = None) -> builtins.list[dict[str, Any]]:  # noqa: A001
    """Your jobs, each with its next times and its last run."""
    found: builtins.list[dict[str, Any]] = default(client).request("GET", BASE)
    return found


def get(name: str, client: Client | None = None) -> dict[str, Any]:
    out: dict[str, Any] = default(client).request("GET", _path(name))
    return out


def create(
    name: str, path: str | Path, client: Client | None = None, **settings: Any
) -> dict[str, Any]:
    """A job from the notebook or script at ``path`` (uploaded now: later edits of the file
    need :func:`update` with ``path``); ``settings`` as the API takes them (schedule, expr,
    timezone, parameters, environment, size, missed, concurrency, retries, timeout_s...)."""
    code = Path(path)
    body = {"name": name, "code_name": code.name, "code": code.read_text(), **settings}
    out: dict[str, Any] = default(client).request("POST", BASE, json=body)
    return out


def update(
    name: str, path: str | Path | None = None, client: Client | None = None, **changes: Any
) -> dict[str, Any]:
    """Change a job; ``path``: upload its code again (a new version)."""
    if path is not None:
        changes = {"code_name": Path(path).name, "code": Path(path).read_text(), **changes}
    out: dict[str, Any] = default(client).request("PATCH", _path(name), json=changes)
    return out


def delete(name: str, client: Client | None = None) -> None:
    default(client).request("DELETE", _path(name))


def run(
    name: str, parameters: dict[str, Any] | None = None, client: Client | None = None
) -> dict[str, Any]:
    """Run it now, with ``parameters`` over the job's."""
    body = {"parameters": parameters}
    out: dict[str, Any] = default(client).request("POST", f"{_path(name)}/runs", json=body)
    return out


def runs(name: str, limit: int = 50, client: Client | None = None) -> builtins.list[dict[str, Any]]:
    """Its runs, newest first."""
    found: builtins.list[dict[str, Any]] = default(client).request(
        "GET", f"{_path(name)}/runs", params={"limit": limit}
    )
    return found


def wait(
    name: str, run_id: int, timeout: float = 3600.0, client: Client | None = None
) -> dict[str, Any]:
    """The run once it has ended (succeeded, failed...); LakeHubError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        found = [r for r in runs(name, 200, client) if r["id"] == run_id]
        if found and found[0]["state"] in ENDED:
            return found[0]
        if time.monotonic() > deadline:
            raise LakeHubError(0, f"run {run_id} of {name} has not ended after {timeout:.0f} s")
        time.sleep(1.0)


def rerun(name: str, run_id: int, client: Client | None = None) -> dict[str, Any]:
    """Plan a failed, lost or cancelled run again: a pipeline goes on from that step."""
    out: dict[str, Any] = default(client).request("POST", f"{_path(name)}/runs/{run_id}/rerun")
    return out


def backfill(name: str, start: str, end: str, client: Client | None = None) -> int:
    """Plan the job's schedule times from ``start`` to ``end`` (ISO times, both included) as
    runs, ``backfill_parallelism`` of them at once; how many were planned."""
    body = {"start": start, "end": end}
    out: dict[str, int] = default(client).request("POST", f"{_path(name)}/backfill", json=body)
    return out["planned"]


def planned_at() -> str:
    """Inside a job: the time this run was planned for (ISO, UTC); the steps of a pipeline
    share it (``s3://.../day=2026-12-01/``)."""
    return os.environ.get("LAKEHUB_JOB_PLANNED", "")


def output(name: str, run_id: int, file: str = "output.ipynb", client: Client | None = None) -> str:
    """A run's executed notebook (``output.ipynb``) or log (``log.txt``), as text."""
    data: bytes = default(client).request("GET", f"{_path(name)}/runs/{run_id}/{file}", raw=True)
    return data.decode()
