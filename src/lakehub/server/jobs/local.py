"""Attempts as processes on this machine (:class:`lakehub.server.jobs.base.Executor`).

Each attempt runs ``python -m lakehub.singleuser.job`` from the job's environment, as the
owner's ``lh-<name>`` account when LakeHub runs as root (else as LakeHub's own account), in a
cgroup of the job's size, in its own folder of the owner's home (``.lakehub/jobs/<key>``), with
the owner's keys and a token of theirs in its environment. It writes its exit code to
``result.json`` there before it ends, and carries its key in its environment: a restarted
control plane adopts an attempt still running, reads how one it did not see end ended, and
never takes a process that reused a pid for it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path

from lakehub.server import leftovers
from lakehub.server.compute.spark_procs import (
    alive,
    carries,
    create_beneath,
    private_dir,
    read_beneath,
    remove_beneath,
    spawn_as,
)
from lakehub.server.config import Settings
from lakehub.server.jobs.base import Attempt, Executor, RunSpec
from lakehub.server.notebooks import limits
from lakehub.server.notebooks.accounts import run_ids

MARKER = "LAKEHUB_JOB"
RESULT = "result.json"


class LocalExecutor(Executor):
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._limits: limits.Limits | None = None
        self._children: dict[int, subprocess.Popen[bytes]] = {}

    @property
    def cgroups(self) -> limits.Limits:
        if self._limits is None:
            self._limits = limits.detect(limits.jobs_root_name(str(self.settings.data_dir)))
        return self._limits

    def _dir(self, owner: str, key: str) -> Path:
        return self.settings.homes_dir / owner / ".lakehub" / "jobs" / key

    def work_dir(self, owner: str, key: str) -> Path:
        ids = run_ids(self.settings, owner)
        work = self._dir(owner, key)
        remove_beneath(work)
        os.close(private_dir(work, ids))  # made, the owner's, never through a link
        return work

    def start(self, spec: RunSpec) -> Attempt:
        ids = run_ids(self.settings, spec.owner)
        env = {
            "PATH": f"{spec.python.parent}:/usr/local/bin:/usr/bin:/bin",
            "HOME": str(self.settings.homes_dir / spec.owner),
            "PYTHONUNBUFFERED": "1",
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "OMP_NUM_THREADS": str(max(1, int(spec.cpus))),
            **spec.env,
            MARKER: self._mark(spec.key),
            **leftovers.marker(self.settings.data_dir),  # stopped with the hub
        }
        procs = self.cgroups.prepare(spec.key, spec.cpus, spec.memory)
        log = spec.work_dir / "log.txt"
        argv = [str(spec.python), "-m", "lakehub.singleuser.job", *spec.argv]
        # the attempt's own (it may read what it wrote), made and opened through no link
        with create_beneath(spec.work_dir, log.name) as out:
            proc = spawn_as(argv, env, spec.work_dir, out, ids)
        with contextlib.suppress(OSError):
            limits.join(procs, proc.pid)
        self._children[proc.pid] = proc
        return Attempt(spec, proc.pid, log)

    def adopt(self, owner: str, key: str, pid: int | None) -> Attempt:
        work = self._dir(owner, key)
        spec = RunSpec(key, owner, Path(), work, (), {}, 0.0, 0)
        if pid is None:  # started, but its pid never recorded: found by its marker, if alive
            marker = f"{MARKER}={self._mark(key)}"
            found = (int(e.name) for e in Path("/proc").iterdir() if e.name.isdigit())
            pid = next((p for p in found if carries(p, marker)), 0)
        return Attempt(spec, pid, work / "log.txt")

    def poll(self, attempt: Attempt) -> int | None:
        child = self._children.get(attempt.pid)
        if child is not None:
            code = child.poll()
            if code is None:
                return None
            self._children.pop(attempt.pid, None)
            self._release(attempt)
            return code if code >= 0 else -1  # killed by a signal: not the job's own failure
        if self._ours(attempt):
            return None
        self._release(attempt)
        try:  # an attempt an earlier control plane started: what it left behind
            return int(json.loads(read_beneath(attempt.spec.work_dir, RESULT))["exit"])
        except (OSError, ValueError, KeyError, TypeError):
            return -1

    def stop(self, attempt: Attempt, grace: float = 5.0) -> None:
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
            if self._ours(attempt):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(attempt.pid, sig)
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline and self.running(attempt):
                time.sleep(0.02)
            if not self.running(attempt):
                break
        child = self._children.pop(attempt.pid, None)
        if child is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=1)
        self._release(attempt)

    def running(self, attempt: Attempt) -> bool:
        child = self._children.get(attempt.pid)
        if child is not None:
            return child.poll() is None
        return alive(attempt.pid) and self._ours(attempt)

    def _release(self, attempt: Attempt) -> None:
        with contextlib.suppress(OSError, TimeoutError):
            self.cgroups.release(attempt.spec.key)

    def _mark(self, key: str) -> str:
        return f"{self.settings.data_dir}/{key}"

    def _ours(self, attempt: Attempt) -> bool:
        return carries(attempt.pid, f"{MARKER}={self._mark(attempt.spec.key)}")
