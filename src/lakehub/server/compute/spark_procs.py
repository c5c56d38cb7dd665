"""Processes and files of a Spark standalone cluster: ports, liveness, the master's state, the
owner's private files. Plain helpers of :mod:`lakehub.server.compute.spark_standalone`."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

from lakehub.compute.spark_session import LAKE_JARS
from lakehub.server.compute.base import ComputeError

Ids = tuple[int, int, list[int]]  # uid, gid, groups of the owner's account
HEAD_MEMORY = 512 << 20  # the master's heap (each worker's daemon is counted with the worker)


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def pyspark_home(env: Path) -> Path:
    found = sorted(env.glob("lib/python3*/site-packages/pyspark/bin/spark-class"))
    if not found:
        raise ComputeError(f"the spark environment at {env} has no pyspark", 503)
    return found[0].parent.parent


def lake_jars(site_packages: Path) -> list[str]:
    """The s3a jars installed in ``site_packages`` (empty when sagemaker_pyspark is not)."""
    jars = [site_packages / "sagemaker_pyspark" / "jars" / j for j in LAKE_JARS]
    return [str(j) for j in jars if j.exists()]


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def carries(pid: int, marker: str) -> bool:
    """Whether process ``pid`` has ``marker`` (``NAME=value``) in its environment: a process of
    this hub's, never another that reused the pid."""
    try:
        env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return False
    return marker.encode() in env


def master_json(host: str, ui_port: int, timeout: float = 2.0) -> dict[str, Any] | None:
    """The master's state (status, workers, applications) from its UI, or None."""
    url = f"http://{host}:{ui_port}/json/"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:  # noqa: S310 (the cluster's own)
            data: dict[str, Any] = json.load(r)
            return data
    except (OSError, ValueError):
        return None


def listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def private_dir(work: Path, user: Ids | None) -> None:
    """``<home>/.lakehub/spark/<name>``, each level private to the owner."""
    for path in (work.parent.parent, work.parent, work):
        path.mkdir(mode=0o700, exist_ok=True)
        if user is not None:
            os.chown(path, user[0], user[1])


def write_private(path: Path, user: Ids | None, props: dict[str, str]) -> None:
    """A Spark properties file only ``user`` can read (a new file: never through a link)."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("".join(f"{k} {v}\n" for k, v in props.items()))
    if user is not None:
        os.chown(path, user[0], user[1])


def spawn_as(
    argv: list[str], env: dict[str, str], cwd: Path, log_file: Path, user: Ids | None
) -> subprocess.Popen[bytes]:
    """A process as ``user`` (None: this account) in a session of its own, reading nothing,
    its output appended to ``log_file``."""
    ids: dict[str, Any] = {}
    if user is not None:
        ids = {"user": user[0], "group": user[1], "extra_groups": user[2]}
    with open(log_file, "ab") as out:
        return subprocess.Popen(  # noqa: S603 (LakeHub's own commands)
            argv,
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            **ids,
        )
