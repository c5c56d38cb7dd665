"""Run a child process under a hard memory limit (a cgroup v1 memory group; root only)."""

from __future__ import annotations

import os
import secrets
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

ROOT = Path("/sys/fs/cgroup/memory")


def run_limited(
    argv: list[str], limit: int, timeout: float, **kw: Any
) -> tuple[Any, dict[str, int]]:
    """Run ``argv`` with at most ``limit`` bytes of memory (swap included); returns the
    completed process and the group's peak usage and OOM kills."""
    if os.geteuid() != 0 or not (ROOT / "memory.limit_in_bytes").exists():
        pytest.skip("a memory limit needs root and the cgroup v1 memory controller")
    group = ROOT / f"lakehub-test-{secrets.token_hex(4)}"
    group.mkdir()
    try:
        (group / "memory.limit_in_bytes").write_text(str(limit))
        swap = group / "memory.memsw.limit_in_bytes"
        if swap.exists():
            swap.write_text(str(limit))

        def enter() -> None:
            (group / "cgroup.procs").write_text(str(os.getpid()))

        proc = subprocess.run(argv, preexec_fn=enter, timeout=timeout, **kw)  # noqa: PLW1509
        oom = dict(line.split() for line in (group / "memory.oom_control").read_text().splitlines())
        stats = {
            "peak": int((group / "memory.max_usage_in_bytes").read_text()),
            "oom_kills": int(oom.get("oom_kill", 0)),
        }
        return proc, stats
    finally:
        for _ in range(50):  # the group can be removed once its last task is gone
            try:
                group.rmdir()
                break
            except OSError:
                time.sleep(0.1)
