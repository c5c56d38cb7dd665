"""Spark standalone clusters per user, from the pyspark wheel of the ``spark`` environment.

A cluster is one master and N workers (``spark-class ...deploy.master.Master|worker.Worker``)
bound to one address (loopback by default), on free ports, with the REST submission port off.
A Spark Connect cluster runs on the hub's loopback only (see :mod:`.spark_connect`), so its
workers would share this machine anyway: it is one process, the Connect server with its
executor inside (Spark's ``local[workers x cores]``), its heap the driver's and the workers'
executors' together; nothing attaches to it but Connect sessions.

Isolation: a standalone master accepts any driver that reaches it, so every cluster has its own
``spark.authenticate`` secret (with AES-based RPC encryption), written only to a properties file
in the owner's home and to the cluster's record; drivers without it are refused. The processes
run as the owner's unix account when the hub is root (``lh-<name>``) and carry the hub's marker,
so ``lakehub down`` stops them. Secrets never reach a command line, a log or ``Cluster.detail``.

Records (``run/compute/spark/<owner>--<name>.json``) keep pids and ports, so clusters outlive a
restart of the control plane; a reaper stops clusters that ran no application for their idle
timeout (read from the master's ``/json/``, or a Connect server's jobs) and marks those whose
master (or Connect server) died as failed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import secrets
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lakehub.compute.spark_session import connect_argv, java_options
from lakehub.server.compute.base import (
    Cluster,
    ClusterRequest,
    ComputeError,
    Engine,
    EngineContext,
    Names,
    Runnings,
)
from lakehub.server.compute.spark_connect import (
    DRIVER_MEMORY,
    connect_app,
    connect_conf,
    heap_mb,
    last_job,
)
from lakehub.server.compute.spark_pool import (
    POOL_NICE,
    SparkPool,
    account_ids,
    pool_lake_env,
    retire,
    warm_up,
)
from lakehub.server.compute.spark_procs import (
    HEAD_MEMORY,
    Ids,
    alive,
    carries,
    free_port,
    lake_jars,
    listening,
    master_json,
    private_dir,
    pyspark_home,
    spawn_as,
    write_private,
)
from lakehub.server.config import Settings
from lakehub.server.leftovers import MARKER

log = logging.getLogger("lakehub.compute.spark")
DEFAULT_IDLE = 1800.0
START_TIMEOUT = 120.0
START_GRACE = 300.0  # seconds a new cluster has for its first application, whatever its timeout
# The master and worker daemons only keep books: the quick compiler alone and a one-thread
# collector (a master measured 1.4 instead of 2.5 CPU-s, 1.1 instead of 1.5 s, until ready).
# Drivers and executors, which run the users' work, keep the JVM's defaults.
DAEMON_JVM = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"

Check = Callable[[str, ClusterRequest, list[Cluster]], Any]
# the class below has a ``list`` method: these keep the builtin usable in its annotations
Records = list[dict[str, Any]]
Clusters = list[Cluster]


def _daemon_jvm(env_dir: Path, role: str) -> str:
    return f"{java_options(env_dir, role)} {DAEMON_JVM}".strip()


class SparkEngine(Engine):
    kind = "spark"

    @classmethod
    def of_hub(cls, hub: EngineContext) -> SparkEngine:
        """Clusters from the ``spark`` environment's pyspark, checked against the owner's
        limits, reaching the lake with the owner's keys, their UI through the front door."""

        def check(owner: str, request: ClusterRequest, mine: Clusters) -> Any:
            return hub.plan(owner, cls.kind, request, engine.running(), HEAD_MEMORY)

        engine = cls(
            hub.settings,
            hub.lake_env,
            check,
            host=hub.settings.compute_bind,
            spark_env=lambda: hub.environment(cls.kind),
            ui_proxy=lambda owner, name: f"{hub.ui_url}/spark/{name}/ui",
        )
        s = hub.settings
        if hub.lake_endpoint and engine.host == "127.0.0.1":  # Spark Connect: loopback only
            engine.pool = SparkPool(
                engine,
                s.compute_pool_spark,
                s.compute_pool_spark_workers,
                s.compute_pool_spark_memory,
                hub.lake_endpoint,
            )
        return engine

    def __init__(
        self,
        settings: Settings,
        lake_env: Callable[[str], dict[str, str]],
        check: Check,
        *,
        spark_env: Callable[[], Path | None] | None = None,
        host: str = "127.0.0.1",
        reap_every: float = 5.0,
        ui_proxy: Callable[[str, str], str] | None = None,
    ) -> None:
        self.settings = settings
        self.lake_env = lake_env
        self.check = check
        self.spark_env = spark_env or (lambda: settings.envs_dir / "spark")
        self.host = host
        self.reap_every = reap_every
        self.ui_proxy = ui_proxy  # (owner, name) -> the UI's address through the front door
        self.dir = settings.run_dir / "compute" / "spark"
        self._lock = threading.RLock()
        self._children: dict[int, subprocess.Popen[bytes]] = {}
        self._stop = threading.Event()
        self._reaper: threading.Thread | None = None
        self.pool: SparkPool | None = None  # warm Spark Connect clusters (spark_pool)

    # the contract -----------------------------------------------------------------------------
    def start(self, owner: str, request: ClusterRequest) -> Cluster:
        """Checked and recorded now; started in the background (status ``starting``, then
        ``running`` once its master leads, or ``failed`` with a ``reason``)."""
        rec = self._prepare(owner, request)
        if rec["status"] == "starting":  # not one from the pool
            threading.Thread(
                target=self._run, args=(rec,), name=f"spark-{rec['name']}", daemon=True
            ).start()
        return self._cluster(rec)

    def _prepare(self, owner: str, request: ClusterRequest) -> dict[str, Any]:
        """Check the request and write the cluster's record (status ``starting``), or hand
        over a pooled cluster (status ``running``) when the request has the pool's shape."""
        if request.workers < 1:
            raise ComputeError("a Spark cluster needs at least one worker")
        if request.memory < 512 * 2**20:
            raise ComputeError("a Spark worker needs at least 512 MiB of memory")
        env_dir = self.spark_env()
        if env_dir is None or not env_dir.exists():
            raise ComputeError(
                "the 'spark' environment is not built yet (see 'lakehub "
                "environment ls'); try again in a moment",
                409,
            )
        if request.connect and self.host != "127.0.0.1":
            raise ComputeError(
                "Spark Connect clusters run on this machine's loopback only (its client sends "
                f"a token without TLS only to localhost); this hub binds clusters to {self.host}"
            )
        with self._lock:  # two starts at once must not both pass the same check
            verdict = self.check(owner, request, self.list(owner))
            timeout: Any = (
                getattr(verdict, "idle_timeout", None)
                or request.idle_timeout
                or getattr(self.settings, "compute_idle_timeout", DEFAULT_IDLE)
            )
            if self.pool is not None and self.pool.fits(request):
                taken = self.pool.take(owner, float(timeout))
                if taken is not None:
                    return taken
            rec = self.record_for(owner, request, {"name": f"{owner}-{secrets.token_hex(3)}"})
            rec["idle_timeout"] = float(timeout)
            self._save(rec)
        return rec

    def record_for(
        self, owner: str, request: ClusterRequest, base: dict[str, Any]
    ) -> dict[str, Any]:
        """A new cluster's record (``base``: its name, and a pooled one's fields)."""
        env_dir = (self.spark_env() or Path("/nonexistent")).resolve()
        rec: dict[str, Any] = {
            **base,
            "owner": owner,
            "status": "starting",
            "host": self.host,
            "workers": request.workers,
            "cores": request.cores,
            "memory": request.memory,
            "idle_timeout": 0.0,
            "server": request.server,
            "started": time.time(),
            "last_busy": time.time(),
            "env": str(env_dir),
            "spark_home": str(pyspark_home(env_dir)),
            "secret": secrets.token_urlsafe(32),
            "pids": [],
            "connect": request.connect,
        }
        if request.connect:  # on this machine only (loopback): one JVM does what workers would
            rec["connect_port"] = free_port(self.host)
            rec["ui_port"] = rec["connect_ui_port"] = free_port(self.host)  # its driver's UI
            rec["connect_token"] = secrets.token_urlsafe(32)
            rec["local"] = True
        else:
            rec["master_port"] = free_port(self.host)
            rec["ui_port"] = free_port(self.host)
        return rec

    def _run(self, rec: dict[str, Any]) -> None:
        try:
            self._launch(rec)
        except Exception as err:
            log.warning("Spark cluster %s of %s did not start: %s", rec["name"], rec["owner"], err)
            self._kill(rec)
            rec["status"], rec["reason"] = "failed", str(err)
            self._save(rec, only_existing=True)

    def list(self, owner: str | None = None) -> Clusters:
        return [self._cluster(r) for r in self._records() if owner in (None, r["owner"])]

    def stop(self, owner: str, name: str) -> None:
        rec = self._record(owner, name)
        self._kill(rec)
        self._drop(rec)

    # beyond the contract ----------------------------------------------------------------------
    def connect(self, owner: str, name: str) -> dict[str, Any]:
        """What the owner's driver needs: master URL, secret, the executors' Python and jars;
        of a Spark Connect cluster (no master: one process), its address and token."""
        rec = self._record(owner, name)
        env = Path(rec["env"])
        classic = {"master": self._master_url(rec), "secret": rec["secret"]}
        return {
            "name": name,
            **({} if rec.get("local") else classic),
            "python": str(env / "bin" / "python"),
            "jars": lake_jars(Path(rec["spark_home"]).parent),
            "cores": self._cores(rec),
            "memory_mb": self._memory_mb(rec),
            "ui_url": f"http://{rec['host']}:{rec['ui_port']}",
            **(
                {"remote": f"sc://localhost:{rec['connect_port']}", "token": rec["connect_token"]}
                if rec.get("connect")
                else {}
            ),
        }

    def running(self) -> Runnings:
        """Every cluster as the planner counts it (owner, kind, name, most memory)."""
        from lakehub.server.compute.base import Running

        return [
            Running(
                r["owner"],
                "spark",
                r["name"],
                HEAD_MEMORY
                + r["workers"] * r["memory"]
                + (DRIVER_MEMORY if r.get("connect") else 0),
            )
            for r in self._records()
            if r["status"] in ("starting", "running")
        ]

    def start_for_server(self, owner: str, request: ClusterRequest) -> dict[str, str]:
        """A cluster that lives with notebook server ``request.server``: checked and recorded
        now, started in the background; returns the server's variables (the secret included,
        for that server's environment only)."""
        self.stop_for_server(owner, request.server or "")
        rec = self._prepare(owner, request)
        threading.Thread(
            target=self._run, args=(rec,), name=f"spark-{rec['name']}", daemon=True
        ).start()
        return {
            "SPARK_MASTER_URL": self._master_url(rec),
            "LAKEHUB_SPARK_CLUSTER": rec["name"],
            "LAKEHUB_SPARK_SECRET": rec["secret"],
            "LAKEHUB_SPARK_CORES": str(self._cores(rec)),
            "LAKEHUB_SPARK_MEMORY_MB": str(self._memory_mb(rec)),
            "PYSPARK_PYTHON": str(Path(rec["env"]) / "bin" / "python"),
            **({"LAKEHUB_SPARK_UI": self._cluster(rec).dashboard_url} if self.ui_proxy else {}),
        }

    def stop_for_server(self, owner: str, server: str) -> Names:
        """Stop the clusters that live with ``owner``'s notebook server ``server``."""
        stopped: Names = []
        for rec in self._records():
            if rec["owner"] == owner and rec.get("server") == server:
                self._kill(rec)
                self._drop(rec)
                stopped.append(rec["name"])
        return stopped

    def open(self) -> None:
        """Forget clusters whose master is gone (a hub that was stopped took them along), adopt
        the others, start the reaper (idle and dead clusters)."""
        for rec in self._records():
            if rec["status"] != "failed" and not self._master_alive(rec):
                self._drop(rec)
                if rec.get("pool"):
                    retire(rec)
        for rec in self.pool_records():  # one starting had its starter in the last control plane
            if rec["status"] == "starting" or not self._master_alive(rec):
                self._kill(rec)
                self._drop(rec)
        if self._reaper is None:
            self._stop.clear()
            self._reaper = threading.Thread(
                target=self._reap_loop, name="spark-reaper", daemon=True
            )
            self._reaper.start()

    def close(self) -> None:
        """Stop the reaper; clusters keep running (a restarted control plane adopts them)."""
        self._stop.set()
        if self._reaper is not None:
            self._reaper.join(timeout=10)
            self._reaper = None

    def reap(self) -> Names:
        """One pass: stop idle clusters, mark dead ones failed. Returns the names stopped."""
        stopped: Names = []
        for rec in self._records():
            if rec["status"] not in ("running", "starting"):
                continue
            if not self._master_alive(rec):
                if rec["status"] == "running":
                    head = "Spark Connect server" if rec.get("local") else "master"
                    rec["status"], rec["reason"] = "failed", f"its {head} stopped"
                    self._kill(rec)
                    self._save(rec, only_existing=True)
                continue
            now = time.time()
            busy = self._busy_since(rec, now)
            if busy is None:  # it does not answer just now
                continue
            # until its first application, a new cluster gets at least START_GRACE seconds
            limit = (
                rec["idle_timeout"] if rec.get("had_app") else max(rec["idle_timeout"], START_GRACE)
            )
            if busy > rec["last_busy"]:
                rec["last_busy"], rec["had_app"] = busy, True
                self._save(rec, only_existing=True)
            elif (
                rec["status"] == "running"
                and rec.get("server") is None
                and now - rec["last_busy"] > limit
            ):
                log.info("stopping idle Spark cluster %s of %s", rec["name"], rec["owner"])
                self._kill(rec)
                self._drop(rec)
                stopped.append(rec["name"])
        return stopped

    def _busy_since(self, rec: dict[str, Any], now: float) -> float | None:
        """When the cluster was last busy (``now`` while it is): an application attached, other
        than its Connect server; for that server, its last job (its sessions may idle). None
        if it does not answer."""
        if rec.get("local"):
            return last_job(rec["host"], rec["connect_ui_port"])
        state = master_json(rec["host"], rec["ui_port"])
        if state is None:
            return None
        mine = connect_app(rec["name"])
        if any(a.get("name") != mine for a in state.get("activeapps") or ()):
            return now
        if not rec.get("connect"):
            return 0.0
        return last_job(rec["host"], rec["connect_ui_port"]) or 0.0

    def _reap_loop(self) -> None:
        while not self._stop.wait(self.reap_every):
            try:
                self.reap()
                if self.pool is not None:
                    self.pool.keep()
            except Exception:  # one bad pass must not end the reaper
                log.exception("the Spark reaper failed a pass")

    def pool_records(self) -> Records:
        return self._records(self.dir / "pool")

    def pooled(self) -> Clusters:
        """The pool: clusters started ahead and nobody's yet."""
        return [self._cluster(r) for r in self.pool_records()]

    # processes --------------------------------------------------------------------------------
    def _launch(self, rec: dict[str, Any]) -> None:
        mine = self.settings.homes_dir / rec["owner"] / ".lakehub" / "spark" / rec["name"]
        work = Path(rec.get("work") or mine)  # a pooled one's: in its account's home
        user = account_ids(self.settings, rec) if rec.get("pool") else self._account(rec["owner"])
        work_fd = private_dir(work, user)
        try:
            self._start(rec, work, user, work_fd)
        finally:
            os.close(work_fd)

    def _start(self, rec: dict[str, Any], work: Path, user: Ids | None, work_fd: int) -> None:
        env = self._env(rec, user)
        logs = self.settings.log_dir / "spark"
        logs.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + START_TIMEOUT
        rec["pids"] = []
        if rec.get("local"):
            self._start_connect(rec, work, user, work_fd, env, logs, deadline)
        else:
            self._start_standalone(rec, work, user, work_fd, env, logs, deadline)
        rec["status"], rec["last_busy"] = "running", time.time()
        self._save(rec, only_existing=True)

    def _start_connect(
        self,
        rec: dict[str, Any],
        work: Path,
        user: Ids | None,
        work_fd: int,
        env: dict[str, str],
        logs: Path,
        deadline: float,
    ) -> None:
        """The Connect server, its executor inside; returns once it serves (a pooled one: once
        it answered a first query)."""
        lake = pool_lake_env(rec) if rec.get("pool") else self.lake_env(rec["owner"])
        shape = (self._cores(rec), self._memory_mb(rec))
        ui = self.ui_proxy(rec["owner"], rec["name"]) if self.ui_proxy else ""
        conf = connect_conf(work, user, rec, lake, *shape, work_fd, ui_base=ui)
        # spark-submit gives a Connect server the daemons' heap, not spark.driver.memory
        server_env = {**env, **lake, "SPARK_DAEMON_MEMORY": f"{heap_mb(rec, shape[1])}m"}
        argv = connect_argv(Path(rec["spark_home"]), conf)
        log_file = logs / f"{rec['name']}-connect.log"
        rec["pids"].append(self._spawn(argv, server_env, work, log_file, user))
        self._save(rec, only_existing=True)

        def serves() -> bool:
            return listening(rec["host"], rec["connect_port"])

        self._until(serves, deadline, rec, "start its Spark Connect server")
        if rec.get("pool"):  # ready means ready for a first query in a second
            marker = {MARKER: str(self.settings.data_dir)}
            warm_up(rec, user, max(1.0, deadline - time.monotonic()), marker)

    def _start_standalone(
        self,
        rec: dict[str, Any],
        work: Path,
        user: Ids | None,
        work_fd: int,
        env: dict[str, str],
        logs: Path,
        deadline: float,
    ) -> None:
        """The master, then the workers once it listens; returns once the master leads."""
        owner, home = rec["owner"], Path(rec["spark_home"])
        props = work / "spark.conf"
        write_private(
            props,
            user,
            {
                "spark.authenticate": "true",
                "spark.authenticate.secret": rec["secret"],
                "spark.network.crypto.enabled": "true",
                "spark.master.rest.enabled": "false",
                "spark.ui.reverseProxy": "true" if self.ui_proxy else "false",
                **(
                    {"spark.ui.reverseProxyUrl": self.ui_proxy(owner, rec["name"])}
                    if self.ui_proxy
                    else {}
                ),
                "spark.worker.cleanup.enabled": "true",
            },
            work_fd,
        )
        spark_class = str(home / "bin" / "spark-class")
        env_dir = Path(rec["env"])
        master = self._spawn(
            [
                spark_class,
                "org.apache.spark.deploy.master.Master",
                "--host",
                rec["host"],
                "--port",
                str(rec["master_port"]),
                "--webui-port",
                str(rec["ui_port"]),
                "--properties-file",
                str(props),
            ],
            {**env, "SPARK_DAEMON_JAVA_OPTS": _daemon_jvm(env_dir, "master")},
            work,
            logs / f"{rec['name']}-master.log",
            user,
        )
        rec["pids"].append(master)
        self._save(rec, only_existing=True)
        # workers go once the master listens: a worker that finds no master retries much later
        self._until(lambda: listening(rec["host"], rec["master_port"]), deadline, rec, "listen")
        # executors inherit it: Python code reaches the lake
        env = {**env, **(pool_lake_env(rec) if rec.get("pool") else self.lake_env(owner))}
        for i in range(rec["workers"]):
            rec["pids"].append(
                self._spawn(
                    [
                        spark_class,
                        "org.apache.spark.deploy.worker.Worker",
                        "--host",
                        rec["host"],
                        "--port",
                        str(free_port(rec["host"])),
                        "--webui-port",
                        "0",
                        "--cores",
                        str(self._cores(rec)),
                        "--memory",
                        f"{self._memory_mb(rec)}m",
                        "--work-dir",
                        str(work / f"worker-{i}"),
                        "--properties-file",
                        str(props),
                        self._master_url(rec),
                    ],
                    {**env, "SPARK_DAEMON_JAVA_OPTS": _daemon_jvm(env_dir, "worker")},
                    work,
                    logs / f"{rec['name']}-worker-{i}.log",
                    user,
                )
            )
        self._save(rec, only_existing=True)

        def leads() -> bool:  # before, it ignores drivers (which retry 20 s later)
            state = master_json(rec["host"], rec["ui_port"])
            return bool(state and state.get("status") == "ALIVE")

        self._until(leads, deadline, rec, "elect its master")

    def _until(
        self, ready: Callable[[], bool], deadline: float, rec: dict[str, Any], what: str
    ) -> None:
        while time.monotonic() < deadline:
            if ready():
                return
            if not self._path(rec["owner"], rec["name"]).exists():
                raise ComputeError("the Spark cluster was stopped while starting", 409)
            if not all(alive(p) for p in rec["pids"]):
                raise ComputeError(
                    f"the Spark cluster stopped while starting (could not {what});"
                    f" see logs/spark/{rec['name']}-*.log",
                    500,
                )
            time.sleep(0.05)
        raise ComputeError(f"the Spark cluster did not {what} in {START_TIMEOUT:.0f} s", 504)

    def _spawn(
        self, argv: Names, env: dict[str, str], cwd: Path, log_file: Path, user: Ids | None
    ) -> int:
        if user is not None and env.get("LAKEHUB_POOL"):  # a filling pool: at low priority
            argv = ["nice", "-n", str(POOL_NICE), *argv]
        proc = spawn_as(list(argv), env, cwd, log_file, user)
        self._children[proc.pid] = proc
        return proc.pid

    def _kill(self, rec: dict[str, Any]) -> None:
        """Workers (and their executors) first, then the master; TERM, then KILL."""
        pids = list(reversed(rec.get("pids") or ()))
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in pids:
                if alive(pid) and self._ours(pid):
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(pid, sig)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and any(alive(p) for p in pids):
                for pid in pids:
                    child = self._children.get(pid)
                    if child is not None:
                        child.poll()
                time.sleep(0.05)
        for pid in pids:
            child = self._children.pop(pid, None)
            if child is not None:
                child.wait(timeout=5)
        if rec.get("pool"):  # it served one user at most: its account goes with it
            retire(rec)

    def _master_alive(self, rec: dict[str, Any]) -> bool:
        """Its first process (the master, or a Connect cluster's one process) runs."""
        return bool(rec["pids"]) and alive(rec["pids"][0]) and self._ours(rec["pids"][0])

    def _ours(self, pid: int) -> bool:
        """A pid of this hub (its marker in the environment): never signal a recycled pid."""
        return carries(pid, f"{MARKER}={self.settings.data_dir}")

    def _env(self, rec: dict[str, Any], user: Ids | None) -> dict[str, str]:
        env_dir = Path(rec["env"])
        owner = rec["owner"]
        env = {
            "PATH": f"{env_dir / 'bin'}:/usr/local/bin:/usr/bin:/bin",
            "SPARK_HOME": rec["spark_home"],
            "SPARK_LOCAL_IP": rec["host"],
            "SPARK_DAEMON_MEMORY": f"{HEAD_MEMORY >> 20}m",
            "SPARK_NO_DAEMONIZE": "1",
            "PYSPARK_PYTHON": str(env_dir / "bin" / "python"),
            "HOME": rec.get("home") or str(self.settings.homes_dir / owner),
            "USER": f"lh-{owner or rec['name']}" if user else os.environ.get("USER", "lakehub"),
            "LANG": os.environ.get("LANG", "C.UTF-8"),
            MARKER: str(self.settings.data_dir),
        }
        if os.environ.get("JAVA_HOME"):
            env["JAVA_HOME"] = os.environ["JAVA_HOME"]
        if rec.get("pool") and not owner:
            env["LAKEHUB_POOL"] = rec["name"]
        return env

    def _account(self, owner: str) -> Ids | None:
        home = self.settings.homes_dir / owner
        if not self.settings.isolated:
            home.mkdir(mode=0o700, parents=True, exist_ok=True)
            return None
        from lakehub.server.notebooks.accounts import ensure_account

        pw = ensure_account(owner, home)
        return pw.pw_uid, pw.pw_gid, os.getgrouplist(pw.pw_name, pw.pw_gid)

    # records ----------------------------------------------------------------------------------
    def _path(self, owner: str, name: str) -> Path:
        """A cluster's record; a pooled one's (no owner yet) in ``pool/``."""
        return self.dir / f"{owner}--{name}.json" if owner else self.dir / "pool" / f"{name}.json"

    def _save(self, rec: dict[str, Any], only_existing: bool = False) -> None:
        """Write the record (atomically); ``only_existing``: unless it was dropped meanwhile."""
        path = self._path(rec["owner"], rec["name"])
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if only_existing and not path.exists():
            return
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(rec, f)
        os.replace(tmp, path)

    def _drop(self, rec: dict[str, Any]) -> None:
        self._path(rec["owner"], rec["name"]).unlink(missing_ok=True)

    def _records(self, where: Path | None = None) -> Records:
        where = where or self.dir
        out: Records = []
        for path in sorted(where.glob("*.json")) if where.exists() else []:
            try:
                out.append(json.loads(path.read_text()))
            except (OSError, ValueError):
                continue
        return out

    def _record(self, owner: str, name: str) -> dict[str, Any]:
        try:
            rec: dict[str, Any] = json.loads(self._path(owner, name).read_text())
        except (OSError, ValueError):
            raise ComputeError(f"you have no Spark cluster named {name!r}", 404) from None
        return rec

    def _master_url(self, rec: dict[str, Any]) -> str:
        if rec.get("local"):  # no master: the address its sessions open
            return f"sc://localhost:{rec['connect_port']}"
        return f"spark://{rec['host']}:{rec['master_port']}"

    @staticmethod
    def _cores(rec: dict[str, Any]) -> int:
        return max(1, math.ceil(rec["cores"]))

    @staticmethod
    def _memory_mb(rec: dict[str, Any]) -> int:
        return max(512, int(rec["memory"]) // 2**20)

    def _cluster(self, rec: dict[str, Any]) -> Cluster:
        detail: dict[str, Any] = {
            k: rec[k] for k in ("server", "idle_timeout", "host", "connect") if k in rec
        }
        if rec.get("local"):  # its workers' share runs inside the one process
            up = rec["workers"] if rec["pids"] and alive(rec["pids"][0]) else 0
        else:
            up = sum(alive(p) for p in rec["pids"][1 : 1 + rec["workers"]])
        detail["workers_alive"] = up
        if rec.get("reason"):
            detail["reason"] = rec["reason"]
        elif rec["status"] == "running" and up < rec["workers"]:
            detail["reason"] = (
                f"{rec['workers'] - up} of {rec['workers']} workers stopped; "
                "running jobs continue on the others"
            )
        dashboard = self.ui_proxy(rec["owner"], rec["name"]) + "/" if self.ui_proxy else ""
        return Cluster(
            kind="spark",
            name=rec["name"],
            owner=rec["owner"],
            status=rec["status"],
            workers=rec["workers"],
            cores=rec["cores"],
            memory=rec["memory"],
            address=self._master_url(rec),
            dashboard_url=dashboard,
            started=rec["started"],
            detail=detail,
        )
