"""Processes and files of a Spark standalone cluster: ports, liveness, the master's state, the
owner's private files. Plain helpers of :mod:`lakehub.server.compute.spark_standalone`."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import stat
import subprocess
import urllib.request
from pathlib import Path
from typing import Any, BinaryIO

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


def private_dir(work: Path, user: Ids | None) -> int:
    """``<home>/.lakehub/spark/<name>``, each level private to the owner; returns a descriptor of
    ``work`` (the caller closes it) for :func:`write_private` and :func:`private_subdir`.

    Never through a link: the owner may plant one in their home (``.lakehub -> /etc``), and the
    hub, root, would then chown or write wherever it points. Each level is opened relative to the
    one before with ``O_NOFOLLOW`` and chowned through its descriptor, so neither a link nor a
    folder swapped meanwhile redirects anything."""
    fd = os.open(work.parent.parent.parent, os.O_RDONLY | os.O_DIRECTORY)  # made by LakeHub
    for level in (work.parent.parent, work.parent, work):
        fd = _enter(fd, level, user)  # closes the level before, whatever happens
    return fd


def private_subdir(dir_fd: int, name: str, user: Ids | None) -> None:
    """A folder ``name`` inside the folder open as ``dir_fd``, private to the owner."""
    os.close(_enter(os.dup(dir_fd), Path(name), user))


def _enter(parent: int, level: Path, user: Ids | None) -> int:
    """The folder ``level.name`` in ``parent`` (made if missing), opened; ``parent`` closed."""
    try:
        with contextlib.suppress(FileExistsError):
            os.mkdir(level.name, 0o700, dir_fd=parent)
        try:
            fd = os.open(level.name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=parent)
        except OSError:  # ELOOP: a link; ENOTDIR: a file
            raise ComputeError(
                f"{level} is a link or a file, not a folder: LakeHub does not follow it; "
                "remove it and try again",
                409,
            ) from None
    finally:
        os.close(parent)
    if user is not None:
        os.fchown(fd, user[0], user[1])
    return fd


def read_beneath(work: Path, name: str) -> bytes:
    """``work/name`` (``work`` as for :func:`private_dir`: below an owner's home), read without
    following a link anywhere below the home. A link the owner planted (``log.txt -> another
    user's file``) would have the hub, root, read it for them. ``OSError`` if it is not a plain
    file there."""
    fd = _open_beneath(work)
    try:
        # O_NONBLOCK: a FIFO planted there does not hang the reader
        found = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=fd)
    finally:
        os.close(fd)
    with os.fdopen(found, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise OSError(f"{work / name} is not a plain file")
        return f.read()


def create_beneath(work: Path, name: str) -> BinaryIO:
    """A new file ``work/name`` (``work`` made by :func:`private_dir`), made through the folders'
    descriptors (never through a link) and given to the folder's owner; open for writing."""
    work_fd = _open_beneath(work)
    try:
        owner = os.fstat(work_fd)
        fd = _new_file(work_fd, name, (owner.st_uid, owner.st_gid))
    finally:
        os.close(work_fd)
    return os.fdopen(fd, "wb")


def _new_file(dir_fd: int, name: str, owner: tuple[int, int] | None) -> int:
    """A new file ``name`` (0600) in the folder open as ``dir_fd``, never through a link, given
    to ``owner`` (uid, gid) before anything is written; open for writing."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
    fd = os.open(name, flags, 0o600, dir_fd=dir_fd)
    if owner is not None:
        os.fchown(fd, *owner)
    return fd


def remove_beneath(work: Path) -> None:
    """``work`` and all in it (``work`` as for :func:`private_dir`), reached without following a
    link the owner planted on the way (``.lakehub/jobs -> elsewhere``): the hub, root, would
    remove whatever it points to. Nothing if it is not there."""
    try:
        fd = _open_beneath(work, levels=2)
    except OSError:
        return  # gone, or a link: nothing of the hub's is there
    try:
        shutil.rmtree(work.name, dir_fd=fd, ignore_errors=True)  # itself never follows links
    finally:
        os.close(fd)


def _open_beneath(work: Path, levels: int = 3) -> int:
    """A descriptor of ``work`` (``<home>/.lakehub/<area>/<name>``), or of its parent with
    ``levels=2``, opened from the home down, no level a link."""
    fd = os.open(work.parents[2], os.O_RDONLY | os.O_DIRECTORY)  # the home: made by LakeHub
    try:
        for level in work.parts[-3:][:levels]:
            inner = os.open(level, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = inner
    except BaseException:
        os.close(fd)
        raise
    return fd


def write_private(path: Path, user: Ids | None, props: dict[str, str], dir_fd: int) -> None:
    """A Spark properties file only ``user`` can read, ``path.name`` in the folder open as
    ``dir_fd``."""
    replace_private(dir_fd, path.name, user, "".join(f"{k} {v}\n" for k, v in props.items()))


def replace_private(dir_fd: int, name: str, user: Ids | None, text: str) -> None:
    """``name`` in the folder open as ``dir_fd`` made anew with ``text``, only ``user`` (None:
    this account) can read it (a new file: never through a link)."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(name, dir_fd=dir_fd)
    fd = _new_file(dir_fd, name, None if user is None else (user[0], user[1]))
    with os.fdopen(fd, "w") as f:
        f.write(text)


def spawn_as(
    argv: list[str], env: dict[str, str], cwd: Path, log_file: Path | BinaryIO, user: Ids | None
) -> subprocess.Popen[bytes]:
    """A process as ``user`` (None: this account) in a session of its own, reading nothing,
    its output appended to ``log_file`` (a file of the hub's, or one already open)."""
    ids: dict[str, Any] = {}
    if user is not None:
        ids = {"user": user[0], "group": user[1], "extra_groups": user[2]}
    if not isinstance(log_file, Path):
        return _popen(argv, env, cwd, log_file, ids)
    with open(log_file, "ab") as out:
        return _popen(argv, env, cwd, out, ids)


def _popen(
    argv: list[str], env: dict[str, str], cwd: Path, out: BinaryIO, ids: dict[str, Any]
) -> subprocess.Popen[bytes]:
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
