"""The jobs area's contract: what runs one attempt of a job, and the clock the scheduler reads.

An :class:`Executor` starts one attempt (``python -m lakehub.singleuser.job`` in the job's
environment, as its owner, in a cgroup of its size) from a :class:`RunSpec`, tells whether it
still runs and how it ended, and stops it. It never decides when or whether to run: the
scheduler (``scheduler``) plans runs, records each before it starts, and applies the job's
policies. ``LocalExecutor`` (``local``) runs attempts on this machine; on Kubernetes an attempt
would be a pod of the same command.

How an attempt ends, by its exit code: 0 succeeded; ``FAILED`` the job's own code failed (a cell
or the script raised; retried only if the job says so); anything else, or no process at all, is
an infrastructure failure (always worth a retry).
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

FAILED = 1  # the job's code raised: its error is in the output and the log


class JobsError(Exception):
    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class Clock:
    """Milliseconds since the epoch; the tests' clock is set by hand."""

    def now_ms(self) -> int:
        return int(time.time() * 1000)


@dataclass(frozen=True)
class RunSpec:
    key: str  # unique: <job id>-<run id>-<attempt>
    owner: str  # whose account runs it
    python: Path  # the environment's interpreter
    work_dir: Path  # the attempt's own folder of the owner's: code in, output and log out
    argv: tuple[str, ...]  # after ``python -m lakehub.singleuser.job``
    env: dict[str, str]  # the owner's keys and tokens: never in argv, never logged
    cpus: float
    memory: int  # bytes


@dataclass(frozen=True)
class Attempt:
    spec: RunSpec
    pid: int
    log: Path  # what the attempt wrote (stdout and stderr)


class Executor(ABC):
    @abstractmethod
    def work_dir(self, owner: str, key: str) -> Path:
        """An empty folder of ``owner``'s for one attempt."""

    @abstractmethod
    def start(self, spec: RunSpec) -> Attempt:
        """Launch the attempt. Blocks briefly (process start)."""

    @abstractmethod
    def poll(self, attempt: Attempt) -> int | None:
        """None while it runs; then its exit code (read from what it left in its folder when
        it was not this process's child), or -1 when it vanished without one."""

    @abstractmethod
    def running(self, attempt: Attempt) -> bool:
        """Whether it still runs (nothing recorded: :meth:`poll` tells how it ended)."""

    @abstractmethod
    def stop(self, attempt: Attempt, grace: float = 5.0) -> None:
        """TERM, then KILL after ``grace`` seconds; releases its cgroup. Blocks."""

    @abstractmethod
    def adopt(self, owner: str, key: str, pid: int | None) -> Attempt:
        """An attempt an earlier run of the control plane started (found by its key when its
        pid was never recorded): it runs on, or has ended, as :meth:`poll` then tells; a
        process that is not that attempt's is never taken for it."""


class Mailer(ABC):
    """Sends a plain-text mail (``SmtpMailer`` in ``notices``: through the configured SMTP
    server); raises ``OSError`` (``smtplib``'s errors are) when it could not."""

    @abstractmethod
    def send(self, to: str, subject: str, body: str) -> None: ...
