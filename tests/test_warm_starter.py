"""The warm starter (notebook servers and model replicas) never learns what it starts: only the
forked child reads a request (a server's tokens and keys), so the starter's memory, which every
later server copies, holds nothing of anyone's. Read here from the starter's own memory."""

from __future__ import annotations

import os
import re
import secrets
import signal
import subprocess
import time
from pathlib import Path

from conftest import shared_environments
from lakehub.server.notebooks import warm


def _memory(pid: int) -> bytes:
    """Every private, writable mapping of process ``pid`` (its heap, its stacks)."""
    chunks = []
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb", 0) as mem:
        for line in maps:
            m = re.match(r"([0-9a-f]+)-([0-9a-f]+) rw.p", line)
            if not m:
                continue
            start, end = int(m[1], 16), int(m[2], 16)
            try:
                mem.seek(start)
                chunks.append(mem.read(end - start))
            except (OSError, ValueError, OverflowError):
                continue
    return b"".join(chunks)


def test_the_starter_keeps_nothing_of_what_it_starts(tmp_path: Path) -> None:
    python = shared_environments() / "datascience" / "bin" / "python"
    sock = tmp_path / "warm.sock"
    env = {"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"}
    starter = subprocess.Popen(
        [str(python), "-m", "lakehub.server.notebooks.warm", str(sock), "replica"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not sock.exists():
            assert starter.poll() is None and time.monotonic() < deadline, "no starter"
            time.sleep(0.05)
        needles, pids = [], []
        for n in range(2):
            needle = f"replica-key-{secrets.token_hex(16)}"
            needles.append(needle.encode())
            log = tmp_path / f"replica-{n}.log"
            request = {
                # no such model: the replica says so in its log and leaves
                "argv": [
                    "serve",
                    "--model",
                    str(tmp_path / "none"),
                    "--name",
                    "m",
                    "--version",
                    "1",
                    "--port",
                    "1",
                ],
                "env": {"LAKEHUB_REPLICA_KEY": needle, "PATH": env["PATH"]},
                "cwd": str(tmp_path),
                "uid": os.getuid(),
                "gid": os.getgid(),
                "groups": os.getgroups(),
                "cgroups": [],
                "log": str(log),
            }
            pids.append(warm.spawn(str(sock), request))
            deadline = time.monotonic() + 60
            while Path(f"/proc/{pids[-1]}").exists() or not log.read_text():
                assert time.monotonic() < deadline, "the replica did not end"
                time.sleep(0.05)
        assert pids[0] != pids[1] and starter.pid not in pids
        for n in range(2):  # each wrote to its own file (no model: it says so and leaves)
            assert "FileNotFoundError" in (tmp_path / f"replica-{n}.log").read_text()
        # a health probe (connect, send nothing) leaves it serving
        import socket

        with socket.socket(socket.AF_UNIX) as probe:
            probe.connect(str(sock))
        time.sleep(0.2)
        assert starter.poll() is None
        memory = _memory(starter.pid)
        assert len(memory) > 10 * 2**20  # its heap, with MLflow and pandas imported
        assert not [n for n in needles if n in memory], "the starter kept a request's secret"
    finally:
        os.killpg(starter.pid, signal.SIGTERM)
        starter.wait(timeout=10)


def test_a_one_off_run_comes_back_with_its_output_and_is_held_to_its_time(tmp_path: Path) -> None:
    """What the AI library's trainings use (``Runner.run_once``): ``python -m`` once, forked
    from the environment's warm starter or as a plain process; what it wrote comes back, and a
    run over its time is killed."""
    import platform

    import pytest

    from lakehub.server.config import load_settings
    from lakehub.server.serving.local import LocalRunner

    python = shared_environments() / "datascience" / "bin" / "python"
    settings = load_settings(data_dir=tmp_path / "data", isolate_users=False)
    sleepy = ["timeit", "-n", "1", "-r", "1", "import time; time.sleep(60)"]
    for runner in (LocalRunner(settings), LocalRunner(settings, warm=False)):
        try:
            out = runner.run_once(
                python, ["platform"], {"PATH": "/usr/bin:/bin"}, tmp_path, "ann", 60
            )
            assert out.strip() == platform.platform(), out
            socks = list(settings.run_dir.glob("serving-*.sock"))
            assert bool(socks) == runner.warm, "forked from the warm starter, or not at all"
            t0 = time.monotonic()
            with pytest.raises(TimeoutError):
                runner.run_once(python, sleepy, {"PATH": "/usr/bin:/bin"}, tmp_path, "ann", 3)
            assert time.monotonic() - t0 < 6  # killed once, not run again another way
            assert not any(settings.log_dir.glob("serving/once-*.log"))  # nothing left behind
        finally:
            runner.close()
