"""Dask clusters' processes forked from a warm starter (:mod:`lakehub.server.notebooks.warm`,
profile ``dask``) in the ``dask`` environment, instead of a fresh interpreter each.

A scheduler and a nanny each spend about 0.6 CPU-s importing ``distributed`` before they do
anything; the starter imports it once and forks one per request, and the child becomes the
cluster's owner before it runs anything. The gateway starts the starter when it starts (the
environment built) or at the first cluster after, and again when the environment is rebuilt
(a new interpreter path) or the starter died. Whatever goes wrong, the cluster's process starts
as a plain one, as upstream starts it: the starter only saves time.

Rules:
- The socket is the gateway account's alone (the starter binds it with umask 0177).
- Only the scheduler's and the worker's commands (``dask scheduler``, ``dask worker``) are
  forked; each request carries the whole environment of that process, the owner's ids, its
  folder, its log file and the priority of a notebook (0).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
from pathlib import Path

from lakehub.server.notebooks import warm

log = logging.getLogger("lakehub.compute")
# distributed's ``nanny.pre-spawn-environ``: read when numpy and the C library load, which is
# in the starter (a cluster's workers are forked from their nanny, and nannies from the starter)
PRE_SPAWN = {
    "MALLOC_TRIM_THRESHOLD_": "65536",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
}
MODULES = {"scheduler": "distributed.cli.dask_scheduler", "worker": "distributed.cli.dask_worker"}
READY_TIMEOUT = 30.0


class WarmStarter:
    def __init__(self, python: str, sock: str) -> None:
        self.python = Path(python) if python else None
        self.sock = Path(sock)
        self._proc: subprocess.Popen[bytes] | None = None
        self._for: Path | None = None  # the interpreter it runs (resolved)
        self._lock = asyncio.Lock()

    def start(self) -> None:
        """Start it now if the environment is built (the gateway's start)."""
        if self.python is not None and self.python.exists():
            self._launch(_build(self.python))

    def _launch(self, python: Path) -> None:
        self.stop()
        self.sock.unlink(missing_ok=True)
        env = {
            "PATH": f"{python.parent}:/usr/local/bin:/usr/bin:/bin",
            "LANG": os.environ.get("LANG", "C.UTF-8"),
            "PYTHONUNBUFFERED": "1",
            **PRE_SPAWN,
            # `lakehub down` stops it with the hub; every process it forks carries the marker
            **{k: os.environ[k] for k in ("LAKEHUB_HUB_ID",) if k in os.environ},
        }
        argv = [str(python), "-m", "lakehub.server.notebooks.warm", str(self.sock), "dask"]
        with open(self.sock.with_suffix(".log"), "ab") as out:
            self._proc = subprocess.Popen(  # noqa: S603 (the environment's own interpreter)
                argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        self._for = python

    async def socket(self) -> Path | None:
        """The socket of a running starter for the current environment, or None (then the
        process starts plain; a starter that was not ready yet serves the next one)."""
        if self.python is None or not self.python.exists():
            return None
        python = _build(self.python)
        async with self._lock:
            if self._proc is None or self._proc.poll() is not None or self._for != python:
                self._launch(python)
            proc = self._proc
        loop = asyncio.get_running_loop()
        deadline = loop.time() + READY_TIMEOUT
        while not self.sock.exists():
            if proc is None or proc.poll() is not None or loop.time() > deadline:
                return None
            await asyncio.sleep(0.02)
        return self.sock

    async def spawn(
        self,
        cmd: list[str],
        env: dict[str, str],
        cwd: str,
        ids: tuple[int, int, list[int]],
        log_path: str,
    ) -> int | None:
        """The pid of ``cmd`` forked from the starter, or None (start it plain)."""
        module = MODULES.get(cmd[1]) if len(cmd) > 1 else None
        sock = await self.socket() if module else None
        if sock is None or module is None:
            return None
        # nice 0: the gateway (and its starter) run niced; clusters as notebooks do
        request = warm.request([module, *cmd[2:]], env, cwd, ids, log_path, module=True, nice=0)
        try:
            return await asyncio.to_thread(warm.spawn, str(sock), request)
        except (OSError, RuntimeError, ValueError) as err:
            log.warning("a Dask process starts plain: the warm starter failed: %s", err)
            return None

    def stop(self) -> None:  # the processes it forked run on
        if self._proc is not None and self._proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=5)
        self._proc = None


def _build(python: Path) -> Path:
    """The interpreter in the environment's current build (``envs/dask`` is a link to it); not
    the interpreter's own link target, which is outside the environment."""
    return python.parent.parent.resolve() / "bin" / python.name
