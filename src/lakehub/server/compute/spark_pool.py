"""Warm Spark Connect clusters: started before anyone asks, each handed to one user, once.

Rules:
- A pooled cluster (a Spark Connect server: one process) starts as an account
  of its own, ``lh-pool-<hex>`` with its home below ``<data dir>/pool`` (when the hub is root;
  else as the hub's account), at low priority, and with no lake keys: its S3A and its
  executors' Python read the keys from a file their environment names
  (``AWS_CREDENTIAL_PROFILES_FILE``, ``AWS_SHARED_CREDENTIALS_FILE``), which does not exist until
  the hand-over. Nothing reads the lake before that.
- A request of the pool's shape (Spark Connect, no notebook server, the pool's workers of one core
  and the pool's memory) takes a ready one, once the owner's limits allow it: the owner's keys are
  written to that file (private to the account), its processes get normal priority back, and the
  record becomes the owner's (its Connect token reaches them alone, through the API).
- A pooled cluster serves one user, once. When it stops its processes are killed, its account
  deleted and its home removed: nothing of one user can remain for a next, as there is none.
- What a pooled cluster's executors cannot have: the variables a cluster started for its owner
  gives them (``LAKEHUB_BUCKET``, the tracking server's); their keys come from the file.
- The pool refills in the background, one cluster at a time, while the machine has the memory
  the cluster may grow to available; under memory pressure (less than half of it) it drains to
  zero. Clusters of a rebuilt ``spark`` environment replace those of the old one.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pwd
import secrets
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from lakehub.server.compute.base import ClusterRequest
from lakehub.server.compute.spark_connect import DRIVER_MEMORY
from lakehub.server.compute.spark_procs import (
    HEAD_MEMORY,
    Ids,
    alive,
    private_dir,
    replace_private,
)
from lakehub.server.leftovers import POOL_DIR
from lakehub.server.runtime import settled
from lakehub.server.supervisor import renice

if TYPE_CHECKING:
    from lakehub.server.config import Settings

log = logging.getLogger("lakehub.compute.spark")
POOL_NICE = 10  # a filling pool yields the CPU to everything a person waits for


class Engine(Protocol):
    """What the pool uses of the Spark engine (:mod:`.spark_standalone`)."""

    settings: Settings
    _lock: Any  # held while a request is checked and a cluster handed over

    def spark_env(self) -> Path | None: ...
    def lake_env(self, owner: str) -> dict[str, str]: ...
    def pool_records(self) -> list[dict[str, Any]]: ...
    def record_for(
        self, owner: str, request: ClusterRequest, base: dict[str, Any]
    ) -> dict[str, Any]: ...
    def _path(self, owner: str, name: str) -> Path: ...
    def _save(self, rec: dict[str, Any], only_existing: bool = False) -> None: ...
    def _kill(self, rec: dict[str, Any]) -> None: ...
    def _run(self, rec: dict[str, Any]) -> None: ...


def keys_file(rec: dict[str, Any]) -> Path:
    return Path(rec["work"]) / "lake.keys"


def pool_lake_env(rec: dict[str, Any]) -> dict[str, str]:
    """A pooled cluster's way to the lake: the endpoint now, the keys from the file later (the
    JVMs' AWS SDK and the executors' boto3 each read their own variable)."""
    keys = str(keys_file(rec))
    return {
        "AWS_ENDPOINT_URL": rec["endpoint"],
        "AWS_CREDENTIAL_PROFILES_FILE": keys,
        "AWS_SHARED_CREDENTIALS_FILE": keys,
    }


# a first query, as the cluster's account, its token on stdin (never on a command line): classes
# loaded and compiled in the driver and the executors, which then answer a user's first query
# in a second rather than in five (measured on two cores)
WARM_UP = """
import sys
from pyspark.sql.connect.client import DefaultChannelBuilder
from pyspark.sql.connect.session import SparkSession
channel = DefaultChannelBuilder(sys.argv[1])
channel.set("token", sys.stdin.read().strip())
spark = SparkSession.builder.channelBuilder(channel).create()
assert spark.range(1000).selectExpr("sum(id) as s").collect()[0].s == 499500
spark.stop()
"""


def warm_up(rec: dict[str, Any], ids: Ids | None, timeout: float, marker: dict[str, str]) -> None:
    """Run the first query on a pooled cluster; raises with its output if it fails. ``marker``:
    the hub's (see :mod:`lakehub.server.leftovers`), so a hub that dies meanwhile has it reaped."""
    python = Path(rec["env"]) / "bin" / "python"
    who: dict[str, Any] = {}
    if ids is not None:
        who = {"user": ids[0], "group": ids[1], "extra_groups": ids[2]}
    env = {"PATH": f"{python.parent}:/usr/bin:/bin", "HOME": rec["home"], "LANG": "C.UTF-8"}
    env |= marker
    done = subprocess.run(  # noqa: S603 (the environment's own interpreter)
        ["nice", "-n", str(POOL_NICE), str(python), "-c", WARM_UP, _remote(rec)],
        input=rec["connect_token"],
        capture_output=True,
        text=True,
        env=env,
        cwd=rec["work"],
        timeout=timeout,
        **who,
    )
    if done.returncode != 0:
        raise RuntimeError(f"its first query failed: {done.stderr.strip()[-500:]}")


def _remote(rec: dict[str, Any]) -> str:
    return f"sc://localhost:{rec['connect_port']}"


def available_memory() -> int:
    """Bytes the machine can give without swapping (``MemAvailable``)."""
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


def _processes_of(uid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if entry.stat().st_uid == uid:
                    out.append(int(entry.name))
    return out


def account_ids(settings: Settings, rec: dict[str, Any]) -> Ids | None:
    """The ids a pooled cluster runs as: its own account (made while it is nobody's), or None
    when the hub is not root."""
    home = Path(rec["home"])
    if not settings.isolated:
        home.mkdir(mode=0o700, parents=True, exist_ok=True)
        return None
    from lakehub.server.notebooks.accounts import ensure_account, unix_name

    home.parent.mkdir(mode=0o711, parents=True, exist_ok=True)
    os.chmod(home.parent, 0o711)  # noqa: S103 (whatever the umask: each account reaches its home)
    try:
        pw = pwd.getpwnam(unix_name(rec["name"]))
    except KeyError:
        if rec["owner"]:  # the account of a cluster in use is never made again
            raise
        pw = ensure_account(rec["name"], home)
    return pw.pw_uid, pw.pw_gid, [pw.pw_gid]


def retire(rec: dict[str, Any]) -> None:
    """A pooled cluster whose processes are gone: its account deleted, its home removed."""
    from lakehub.server.notebooks.accounts import remove_account

    with contextlib.suppress(RuntimeError):
        remove_account(rec["name"])
    shutil.rmtree(rec["home"], ignore_errors=True)


def renice_user(uid: int, nice: int) -> None:
    """Every thread of every process of ``uid`` to ``nice`` (root may lower it again)."""
    for pid in _processes_of(uid):
        renice(pid, nice)


class SparkPool:
    """The pool of one Spark engine (its records in ``<engine dir>/pool``)."""

    def __init__(self, engine: Engine, size: int, workers: int, memory: int, endpoint: str):
        self.engine, self.size, self.endpoint = engine, size, endpoint
        self.shape = ClusterRequest(workers=workers, cores=1.0, memory=memory, connect=True)
        self.home = engine.settings.data_dir / POOL_DIR
        self._filling: threading.Thread | None = None
        self._failed = 0  # fills that failed in a row: the next waits 2**n passes, up to 64
        self._wait = 0

    def fits(self, request: ClusterRequest) -> bool:
        s = self.shape
        return (
            self.size > 0
            and request.connect
            and request.server is None
            and (request.workers, request.cores, request.memory) == (s.workers, s.cores, s.memory)
        )

    def cap(self) -> int:
        """The most a pooled cluster may use once someone works on it."""
        return HEAD_MEMORY + DRIVER_MEMORY + self.shape.workers * self.shape.memory

    # hand-over --------------------------------------------------------------------------------
    def take(self, owner: str, idle_timeout: float) -> dict[str, Any] | None:
        """A ready pooled cluster made ``owner``'s, or None; called under the engine's lock."""
        e = self.engine
        env = e.spark_env()
        current = str(env.resolve()) if env is not None else None
        for rec in e.pool_records():
            if rec["status"] != "running" or not all(alive(p) for p in rec["pids"]):
                continue
            if rec["env"] != current:
                continue
            ids = account_ids(e.settings, rec)
            self._write_keys(rec, ids, e.lake_env(owner))
            if ids is not None:
                renice_user(ids[0], 0)  # the owner's work runs at the priority of everyone's
            pooled = e._path("", rec["name"])
            rec.update(owner=owner, idle_timeout=idle_timeout, started=time.time())
            rec["last_busy"] = time.time()
            e._save(rec)
            pooled.unlink(missing_ok=True)
            log.info("Spark cluster %s from the pool, for %s", rec["name"], owner)
            return rec
        return None

    def _write_keys(self, rec: dict[str, Any], ids: Ids | None, lake: dict[str, str]) -> None:
        """The owner's keys in the file the cluster's processes read (never through a link)."""
        path = keys_file(rec)
        text = (
            "[default]\n"
            f"aws_access_key_id = {lake['AWS_ACCESS_KEY_ID']}\n"
            f"aws_secret_access_key = {lake['AWS_SECRET_ACCESS_KEY']}\n"
        )
        work_fd = private_dir(path.parent, ids)
        try:
            replace_private(work_fd, path.name, ids, text)
        finally:
            os.close(work_fd)

    def new(self) -> dict[str, Any]:
        """A pooled cluster's first fields: its name (its account's too), its home, the lake."""
        name = f"pool-{secrets.token_hex(3)}"
        home = self.home / name
        return {
            "name": name,
            "pool": True,
            "home": str(home),
            "work": str(home / ".lakehub" / "spark" / name),
            "endpoint": self.endpoint,
        }

    # keeping it full --------------------------------------------------------------------------
    def keep(self) -> None:
        """One pass of the reaper: drop dead or stale pooled clusters, drain under memory
        pressure, start one more when the pool is short."""
        e = self.engine
        env = e.spark_env()
        current = str(env.resolve()) if env is not None and env.exists() else None
        free = available_memory()
        pressure = free < self.cap() // 2
        with e._lock:  # not while one is handed over
            pooled = e.pool_records()
            for rec in list(pooled):
                dead = rec["status"] == "failed" or (
                    rec["status"] == "running" and not all(alive(p) for p in rec["pids"])
                )
                stale = rec["env"] != current and rec["status"] != "starting"
                if dead or stale or pressure or len(pooled) > self.size:
                    if rec["status"] == "starting" and not (pressure or dead):
                        continue
                    e._kill(rec)
                    e._path("", rec["name"]).unlink(missing_ok=True)
                    pooled.remove(rec)
        busy = self._filling is not None and self._filling.is_alive()
        short = len(pooled) < self.size
        if busy or not short or current is None or free < self.cap():
            return
        if not settled(e.settings):  # the hub's own start first: a fill is JVMs' worth of CPU
            return
        if self._wait > 0:  # the last fills failed (their logs say why): not every pass
            self._wait -= 1
            return
        self._filling = threading.Thread(target=self.fill, name="spark-pool", daemon=True)
        self._filling.start()

    def fill(self) -> None:
        e = self.engine
        rec = e.record_for("", self.shape, self.new())
        e._save(rec)
        e._run(rec)
        failed = rec["status"] == "failed"
        self._failed = self._failed + 1 if failed else 0
        self._wait = min(64, 2**self._failed) if failed else 0
