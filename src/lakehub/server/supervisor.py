"""Starts, watches, restarts and stops component processes.

Each component runs in its own session (process group) with its output in ``logs/<name>.log``.
One that exits unexpectedly is restarted after a backoff that doubles up to a minute and resets
once it has stayed up; every event goes to the supervisor log. Stopping sends SIGTERM to each
group, then SIGKILL after a grace period, so nothing outlives the hub.

A component dies with its supervisor: it is started with the parent-death signal set to SIGTERM
(``PR_SET_PDEATHSIG``), so a supervisor killed with ``kill -9`` takes its components along, and
each stops what it started as on any SIGTERM (JupyterHub its notebook servers and services, for
``cleanup_servers`` is set). The kernel sends that signal when the *thread* that started the
child ends, so components are started only from the main thread, which lives as long as the
supervisor. What a component leaves behind is the reaper's (see :mod:`lakehub.server.leftovers`).
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import http.client
import logging
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("lakehub.server.supervisor")

BACKOFF_START = 1.0
BACKOFF_MAX = 60.0
STABLE_AFTER = 30.0


@dataclass
class Component:
    name: str
    argv: list[str]
    log_file: Path
    url: str
    health_url: str  # healthy when it answers with an HTTP status below 500 (or unix: connects)
    env: dict[str, str] = field(default_factory=dict)
    inherit_env: bool = True  # False: the child sees only ``env``
    nice: int = 0
    settled_nice: int | None = None  # its priority once the hub's start is over (see settle)
    cwd: Path | None = None
    pid_file: Path | None = None
    # runtime
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    started_at: float = 0.0
    next_start: float = 0.0
    backoff: float = BACKOFF_START
    owner_seen: int = 0  # the pid whose process tree was seen holding the health port

    def healthy(self, timeout: float = 1.0) -> bool:
        """Answers its health URL, and that answer is its own: a component that could not bind
        its port (another process took it between allocation and start) is not healthy because
        the other process answers."""
        if not probe(self.health_url, timeout):
            return False
        if self.proc is None or self.proc.poll() is not None:
            return False
        if self.owner_seen != self.proc.pid:
            port = _tcp_port(self.health_url)
            if port and not tree_listens(self.proc.pid, port):
                return False
            self.owner_seen = self.proc.pid
        return True


def _tcp_port(url: str) -> int | None:
    if url.startswith("unix:"):
        return None
    if url.startswith("tcp:"):
        return int(url.rpartition(":")[2])
    parts = urllib.parse.urlsplit(url)
    return parts.port or (443 if parts.scheme == "https" else 80)


def tree_listens(root: int, port: int) -> bool:
    """Whether ``root`` or one of its descendants holds a socket listening on TCP ``port``
    (read from ``/proc``; True where there is no ``/proc/net/tcp`` to read)."""
    if not Path("/proc/net/tcp").exists():
        return True
    wanted: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                f = line.split()  # sl local remote state ... inode
                if f[3] == "0A" and int(f[1].rpartition(":")[2], 16) == port:
                    wanted.add(f"socket:[{f[9]}]")
    if not wanted:
        return False
    children: dict[int, list[int]] = {}
    for proc in Path("/proc").iterdir():
        with contextlib.suppress(OSError, ValueError, IndexError):
            # after the command's closing parenthesis: state, ppid, ...
            ppid = int((proc / "stat").read_text().rpartition(")")[2].split()[1])
            children.setdefault(ppid, []).append(int(proc.name))
    todo = [root]
    while todo:
        pid = todo.pop()
        todo += children.get(pid, [])
        with contextlib.suppress(OSError):
            if any(os.readlink(fd) in wanted for fd in Path(f"/proc/{pid}/fd").iterdir()):
                return True
    return False


def probe(url: str, timeout: float = 1.0) -> bool:
    """HTTP: any status below 500; ``unix:PATH`` and ``tcp:HOST:PORT``: accepts a connection."""
    if url.startswith(("unix:", "tcp:")):
        unix = url.startswith("unix:")
        family = socket.AF_UNIX if unix else socket.AF_INET
        host, _, port = url[4:].rpartition(":")
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            try:
                s.connect(url[5:] if unix else (host, int(port)))
            except OSError:
                return False
            return True
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 (loopback)
            return int(resp.status) < 500
    except urllib.error.HTTPError as err:
        return err.code < 500
    except (OSError, ValueError, http.client.HTTPException):  # refused, reset, cut short
        return False


class Supervisor:
    def __init__(
        self,
        components: list[Component],
        on_change: Callable[[], None],
        marker: dict[str, str] | None = None,
    ) -> None:
        """``marker``: environment given to every component, to find its processes later."""
        self.components = components
        self._on_change = on_change
        self._marker = marker or {}
        self._stopping = threading.Event()

    def start_all(self, names: tuple[str, ...] = ()) -> None:
        """Start the named components (all by default) that are not running yet."""
        for c in self.components:
            if c.proc is None and (not names or c.name in names):
                self._start(c)
        self._on_change()

    def settle(self) -> None:
        """The hub's start is over: components niced only so as not to slow it (those with a
        ``settled_nice``) get their priority back, now and when restarted."""
        for c in self.components:
            if c.settled_nice is not None:
                c.nice = c.settled_nice
                if c.proc is not None:
                    renice(c.proc.pid, c.nice)

    def _start(self, c: Component) -> None:
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError("components are started from the main thread (see the module)")
        c.log_file.parent.mkdir(parents=True, exist_ok=True)
        out = open(c.log_file, "ab")  # noqa: SIM115 (handed to the child)
        env = {**(os.environ if c.inherit_env else {}), **c.env, **self._marker}
        try:
            c.proc = subprocess.Popen(
                c.argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=c.cwd,
                start_new_session=True,
                preexec_fn=_child_setup(os.getpid(), c.nice),
            )
        finally:
            out.close()
        c.started_at = time.monotonic()
        if c.pid_file:
            c.pid_file.write_text(str(c.proc.pid))
        log.info("started %s (pid %d)", c.name, c.proc.pid)

    def watch(self, until: Callable[[], bool] | None = None, interval: float = 0.2) -> None:
        """Restart dead components until stopped (or ``until()`` is true). One never started is
        left for :meth:`start_all` (``up`` starts some once the hub is ready)."""
        while not self._stopping.is_set() and not (until and until()):
            now = time.monotonic()
            changed = False
            for c in self.components:
                if c.proc is None:
                    if c.started_at and now >= c.next_start:
                        self._start(c)
                        c.restarts += 1
                        changed = True
                    continue
                code = c.proc.poll()
                if code is None:
                    if now - c.started_at > STABLE_AFTER:
                        c.backoff = BACKOFF_START
                    continue
                c.proc = None
                c.next_start = now + c.backoff
                log.warning(
                    "%s exited with code %s; restarting in %.0f s (see %s)",
                    c.name,
                    code,
                    c.backoff,
                    c.log_file,
                )
                c.backoff = min(c.backoff * 2, BACKOFF_MAX)
                changed = True
            if changed:
                self._on_change()
            self._stopping.wait(interval)

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def request_stop(self) -> None:
        self._stopping.set()

    def stop_all(self, grace: float = 10.0) -> None:
        self._stopping.set()
        for c in reversed(self.components):
            if c.proc is not None and c.proc.poll() is None:
                _signal_group(c.proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for c in reversed(self.components):
            if c.proc is None:
                continue
            try:
                c.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop in %.0f s; killing it", c.name, grace)
            # whatever is left in the group (children included) goes now
            _signal_group(c.proc.pid, signal.SIGKILL)
            c.proc.wait()
            log.info("stopped %s", c.name)
            c.proc = None


PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


@functools.cache
def _prctl() -> Any:
    fn = ctypes.CDLL(None, use_errno=True).prctl
    fn.argtypes = [ctypes.c_int] + [ctypes.c_ulong] * 4
    fn.restype = ctypes.c_int
    return fn


def die_with(parent: int, prctl: Any = None) -> None:
    """This process gets SIGTERM when ``parent`` (its parent) ends, even by ``kill -9``; if that
    has happened already, it ends now. ``prctl``: looked up beforehand (see _child_setup)."""
    if (prctl or _prctl())(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent:  # the parent died before the signal was set
        os._exit(1)


def _child_setup(parent: int, nice: int) -> Callable[[], None]:
    """What a component's process does between fork and exec: get SIGTERM when ``parent`` dies,
    then lower its priority by ``nice``. Looked up here, in the parent, so the child only calls."""
    prctl = _prctl()

    def setup() -> None:
        die_with(parent, prctl)
        if nice:
            os.nice(nice)

    return setup


def renice(pid: int, nice: int) -> None:
    """Every thread of ``pid`` to ``nice`` (a thread's priority is its own on Linux; lowering
    it needs root, and a process that is gone or not ours is left as it is)."""
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                os.setpriority(os.PRIO_PROCESS, int(task.name), nice)


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
