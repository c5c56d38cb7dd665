"""A hub's processes, found by the marker in their environment, and stopped when nobody owns them.

Every process started for a hub (components, notebook servers, kernels, clusters, builds) carries
``LAKEHUB_HUB_ID=<data dir>`` in its environment. Rules:

- Only a process that holds the data directory's lock, or the reaper of a supervisor that has
  died, may stop them: whatever carries the marker then has no owner.
- ``stop`` sends SIGTERM, gives ``grace`` seconds, sends SIGKILL, and returns only once each is
  gone (exited, or a zombie: its sockets are closed, so its ports are free), or with the pids
  that would not go in time.
- The reaper (``python -m lakehub.server.leftovers DATA_DIR``) is started by the supervisor in a
session
  of its own, with stdin the read end of a pipe the supervisor never writes. When the supervisor
  dies, however it dies (``kill -9`` included), the pipe ends and the reaper stops everything the
  hub left, then exits. It carries the marker itself, so a new ``lakehub up`` sweeps it too and
  nothing of the old hub can touch the new one.

Only the standard library is imported here: the reaper stays small.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

MARKER = "LAKEHUB_HUB_ID"  # in the environment of every process started for a hub
POOL_DIR = "pool"  # below the data directory: the homes of the pooled clusters' accounts
REPLICA_FILES = "serving"  # below the data directory: model replicas' files
GRACE = 5.0  # seconds between SIGTERM and SIGKILL
KILL_WAIT = 10.0  # seconds for SIGKILLed processes to be gone


def marker(data_dir: Path | str) -> dict[str, str]:
    return {MARKER: str(data_dir)}


def hub_processes(data_dir: Path | str) -> list[int]:
    """Live processes started for the hub on ``data_dir`` (this process excepted)."""
    tag = f"{MARKER}={data_dir}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if tag in (entry / "environ").read_bytes().split(b"\0") and not _gone(int(entry.name)):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def _gone(pid: int) -> bool:
    """Exited, or a zombie (a zombie has closed all its files)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    fields = stat.rpartition(")")[2].split()
    return not fields or fields[0] in ("Z", "X", "x")


def _signal(pids: list[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def _wait_gone(pids: list[int], timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    while True:
        alive = [p for p in pids if not _gone(p)]
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(0.05)


def stop(data_dir: Path | str, grace: float = GRACE, rounds: int = 3) -> tuple[int, list[int]]:
    """Stop every process of the hub on ``data_dir``; returns (how many went, pids that stay).

    A few rounds, because a dying process may start another (a hub stopping its servers).
    """
    stopped: set[int] = set()
    alive: list[int] = []
    for _ in range(rounds):
        found = hub_processes(data_dir)
        if not found:
            break
        _signal(found, signal.SIGTERM)
        alive = _wait_gone(found, grace)
        _signal(alive, signal.SIGKILL)
        alive = _wait_gone(alive, KILL_WAIT)
        stopped.update(p for p in found if p not in alive)
    if not alive:
        from lakehub.server.notebooks.limits import remove_hub_groups  # the standard library only

        remove_hub_groups(str(data_dir))
        remove_pool_accounts(data_dir)
        shutil.rmtree(Path(data_dir) / REPLICA_FILES, ignore_errors=True)  # their replicas: gone
    return len(stopped), alive


def remove_pool_accounts(data_dir: Path | str) -> None:
    """The accounts of the hub's pooled clusters (``lh-pool-*``, at home in its pool folder),
    and their homes: each served one user at most, and its processes are gone."""
    import pwd

    below = f"{Path(data_dir) / POOL_DIR}/"
    for pw in pwd.getpwall():
        if pw.pw_name.startswith("lh-pool-") and pw.pw_dir.startswith(below):
            subprocess.run(["userdel", pw.pw_name], capture_output=True, check=False)
            shutil.rmtree(pw.pw_dir, ignore_errors=True)


def reap(data_dir: str) -> None:
    """The reaper: wait for the supervisor to go (stdin ends), then stop what it left."""
    while os.read(0, 4096):  # nothing is ever written: this returns b"" once the writer is gone
        pass
    count, stuck = stop(data_dir)
    print(
        f"reaper: the supervisor is gone; stopped {count} processes it left"
        + (f"; these would not stop: {stuck}" if stuck else ""),
        flush=True,
    )


def start_reaper(data_dir: Path, log_file: Path) -> int:
    """Start the reaper for this process; returns the pipe's write end, to keep open until exit
    (it is not inherited: components and the reaper do not hold it)."""
    read_end, write_end = os.pipe()
    with open(log_file, "ab") as out:
        subprocess.Popen(
            [sys.executable, "-m", "lakehub.server.leftovers", str(data_dir)],
            stdin=read_end,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **marker(data_dir)},
            start_new_session=True,  # a signal to the supervisor's group does not reach it
        )
    os.close(read_end)
    return write_end


if __name__ == "__main__":
    reap(sys.argv[1])
