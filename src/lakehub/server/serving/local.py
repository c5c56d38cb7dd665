"""Replicas as processes on this machine (:class:`lakehub.server.serving.base.Runner`).

Each replica runs :mod:`lakehub.singleuser.serve` from the model's environment, as the
owner's ``lh-<name>`` account when LakeHub runs as root (else as LakeHub's own account), in a
cgroup of the endpoint's size (CPU quota, memory with no swap; when cgroups are available), with
nothing of the owner's but the model files: no lake keys, no tokens. Its files live in the
data directory (``serving/<key>``), private to the owner. Every replica carries a marker of
this hub in its environment, so a restarted control plane finds and stops what it left behind
and never signals another process that reused a pid.

Replicas are forked from a warm starter per environment (:mod:`lakehub.server.notebooks.warm`,
profile ``replica``: MLflow, pandas and scikit-learn imported once), started with the first
replica of that environment and stopped with the control plane; a replica starts as a plain
process when its starter cannot be had.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import secrets
import select
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

from lakehub.server import leftovers
from lakehub.server.compute.spark_procs import (
    Ids,
    alive,
    carries,
    free_port,
    spawn_as,
)
from lakehub.server.config import Settings
from lakehub.server.notebooks import limits, warm
from lakehub.server.notebooks.accounts import run_ids
from lakehub.server.serving.base import Replica, ReplicaSpec, Runner

logger = logging.getLogger("lakehub.serving")
MARKER = "LAKEHUB_SERVING_HUB"
HOST = "127.0.0.1"


class LocalRunner(Runner):
    def __init__(self, settings: Settings, warm: bool = True) -> None:
        self.settings = settings
        self.warm = warm  # False: every replica a plain process (as bench/replicas.py compares)
        self.logs = settings.log_dir / "serving"
        self._children: dict[int, subprocess.Popen[bytes]] = {}
        self._starters: dict[Path, tuple[subprocess.Popen[bytes], Path]] = {}
        self._lock = threading.Lock()

    @property
    def cgroups(self) -> limits.Limits:
        return limits.of_hub(str(self.settings.data_dir))

    def _account(self, owner: str) -> Ids | None:
        return run_ids(self.settings, owner)

    def files_dir(self, owner: str, key: str) -> Path:
        """``<data>/serving/<key>``, the hub's alone until :meth:`start` hands it over: the
        control plane, root, writes the files by path, so they are never below a folder the
        owner could swap for a link (as in their home)."""
        top = self.settings.data_dir / leftovers.REPLICA_FILES
        top.mkdir(mode=0o711, exist_ok=True)  # the owner's replica walks through to its own
        work = top / key
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(mode=0o700)
        return work

    def start(self, spec: ReplicaSpec) -> Replica:
        ids = self._account(spec.owner)
        if ids is not None:
            _hand_over(spec.model_dir, ids)
        secret = secrets.token_urlsafe(24)
        port = free_port(HOST)
        self.logs.mkdir(parents=True, exist_ok=True, mode=0o700)
        log = self.logs / f"{spec.key}.log"
        env = {
            "PATH": f"{spec.python.parent}:/usr/local/bin:/usr/bin:/bin",
            "HOME": str(self.settings.homes_dir / spec.owner),
            "LAKEHUB_REPLICA_KEY": secret,
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "PYTHONUNBUFFERED": "1",
            "OMP_NUM_THREADS": str(max(1, int(spec.cpus))),  # BLAS within the size's CPUs
            MARKER: str(self.settings.data_dir),
            **leftovers.marker(self.settings.data_dir),  # stopped with the hub
        }
        argv = [
            str(spec.python),
            "-m",
            "lakehub.singleuser.serve",
            "--model",
            str(spec.model_dir),
            "--name",
            spec.name,
            "--version",
            str(spec.version),
            "--host",
            HOST,
            "--port",
            str(port),
        ]
        if spec.batching:
            argv.append("--batch")
        procs = self.cgroups.prepare(spec.key, spec.cpus, spec.memory)
        # argv[2:]: sys.argv of ``-m lakehub.singleuser.serve``; the cgroups are joined before
        # anything of the model's runs
        pid = self._fork(spec.python, argv[2:], env, spec.model_dir, ids, log, cgroups=procs)
        if pid is not None:
            return Replica(spec, pid, HOST, port, secret, log)
        proc = spawn_as(argv, env, spec.model_dir, log, ids)
        # joined from here: the child runs its first instructions (the interpreter's start)
        # outside the group, none of the model's
        with contextlib.suppress(OSError):
            limits.join(procs, proc.pid)
        self._children[proc.pid] = proc
        return Replica(spec, proc.pid, HOST, port, secret, log)

    def _fork(
        self,
        python: Path,
        argv: list[str],
        env: dict[str, str],
        cwd: Path,
        ids: Ids | None,
        log: Path,
        cgroups: list[str] | None = None,
        module: bool = False,
    ) -> int | None:
        """The pid of a process forked from ``python``'s warm starter (its protocol's request);
        None, said in the log, when no starter can be had: then start a plain process."""
        starter = self._starter(python) if self.warm else None
        if starter is None:
            return None
        ids = ids or (os.getuid(), os.getgid(), os.getgroups())
        request = warm.request(argv, env, str(cwd), ids, str(log), cgroups, module)
        try:
            return warm.spawn(str(starter), request)
        except (OSError, RuntimeError, ValueError) as err:
            logger.warning("%s starts as a plain process: %s", argv[0], err)
            return None

    def _starter(self, python: Path, timeout: float = 60.0) -> Path | None:
        """The socket of ``python``'s warm starter, started (and waited for) on first use; None
        if it does not come up."""
        with self._lock:
            proc, sock = self._starters.get(python, (None, Path()))
            if proc is None or proc.poll() is not None:
                digest = hashlib.sha256(str(python).encode()).hexdigest()[:10]
                sock = self.settings.run_dir / f"serving-{digest}.sock"
                sock.unlink(missing_ok=True)
                sock.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                self.logs.mkdir(parents=True, exist_ok=True, mode=0o700)
                env = {
                    "PATH": f"{python.parent}:/usr/local/bin:/usr/bin:/bin",
                    "LANG": os.environ.get("LANG", "C.UTF-8"),
                    "OMP_NUM_THREADS": "1",  # each replica sets its size's
                    "MLFLOW_DISABLE_TELEMETRY": "true",
                    "PYTHONUNBUFFERED": "1",
                    # every replica forked from it carries these in /proc/<pid>/environ
                    MARKER: str(self.settings.data_dir),
                    **leftovers.marker(self.settings.data_dir),
                }
                argv = [str(python), "-m", "lakehub.server.notebooks.warm", str(sock), "replica"]
                proc = spawn_as(argv, env, self.logs, self.logs / "warm.log", None)
                self._starters[python] = (proc, sock)
            deadline = time.monotonic() + timeout
            while not sock.exists():
                if proc.poll() is not None or time.monotonic() > deadline:
                    return None
                time.sleep(0.02)
            return sock

    def close(self) -> None:
        """Stop the warm starters (the replicas they forked are stopped one by one)."""
        with self._lock:
            for proc, sock in self._starters.values():
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=5)
                sock.unlink(missing_ok=True)
            self._starters.clear()

    def alive(self, replica: Replica) -> bool:
        child = self._children.get(replica.pid)
        if child is not None and child.poll() is not None:
            return False
        return alive(replica.pid)

    def stop(self, replica: Replica, grace: float = 5.0) -> None:
        pid = replica.pid
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
            if self._ours(pid):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, sig)
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline and self.alive(replica):
                time.sleep(0.02)
            if not self.alive(replica):
                break
        child = self._children.pop(pid, None)
        if child is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=1)
        with contextlib.suppress(OSError, TimeoutError):
            self.cgroups.release(replica.spec.key)
        shutil.rmtree(replica.spec.model_dir, ignore_errors=True)

    def why(self, replica: Replica) -> str:
        try:
            lines = replica.log.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-12:])

    def run_once(
        self,
        python: Path,
        argv: list[str],
        env: dict[str, str],
        cwd: Path,
        owner: str,
        timeout: float,
    ) -> str:
        ids = self._account(owner)
        self.logs.mkdir(parents=True, exist_ok=True, mode=0o700)
        log = self.logs / f"once-{secrets.token_hex(6)}.log"
        env = {
            **env,
            MARKER: str(self.settings.data_dir),
            **leftovers.marker(self.settings.data_dir),
        }
        try:
            pid = self._fork(python, argv, env, cwd, ids, log, module=True)
            if pid is not None:
                _wait_exit(pid, timeout)  # TimeoutError: not run again as a plain process
                return log.read_text(errors="replace")
            proc = spawn_as([str(python), "-m", *argv], env, cwd, log, ids)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                raise TimeoutError(f"{argv[0]} took longer than {timeout:.0f} s") from None
            return log.read_text(errors="replace")
        finally:
            log.unlink(missing_ok=True)

    def stop_leftovers(self) -> int:
        stopped = 0
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and self._ours(int(entry.name)):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(int(entry.name), signal.SIGKILL)
                    stopped += 1
        return stopped

    def _ours(self, pid: int) -> bool:
        return carries(pid, f"{MARKER}={self.settings.data_dir}")


def _wait_exit(pid: int, timeout: float) -> None:
    """Wait for a process that is not a child of this one (a warm starter's); killed, and
    ``TimeoutError``, after ``timeout`` seconds."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return  # gone already
    try:
        if not select.select([fd], [], [], timeout)[0]:
            signal.pidfd_send_signal(fd, signal.SIGKILL)
            raise TimeoutError(f"process {pid} took longer than {timeout:.0f} s")
    finally:
        os.close(fd)


def _hand_over(folder: Path, ids: Ids) -> None:
    """The files the control plane wrote, given to the replica's account; its top folder last,
    so while anything below is walked the tree is the hub's alone (nobody can put a link in it).
    Once the top is the owner's it is never walked again (replicas after the first)."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        if os.fstat(fd).st_uid == ids[0]:
            return
        for root, dirs, files in os.walk(folder):
            for n in [*dirs, *files]:
                os.chown(os.path.join(root, n), ids[0], ids[1], follow_symlinks=False)
        os.fchown(fd, ids[0], ids[1])
    finally:
        os.close(fd)
