"""Server limits on real cgroups (root only), and the kernel launcher's memory guard."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from lakehub.server.notebooks.limits import (
    Cgroups,
    CgroupV1,
    CgroupV2,
    NoLimits,
    _mounts,
    detect,
    hub_root_names,
    join,
    remove_hub_groups,
)
from lakehub.singleuser.kernel import HEADROOM, limit_from_env, memory_rlimit

MiB, GiB = 2**20, 2**30
SRC = Path(__file__).resolve().parent.parent / "src"
# touches every page of 1 GiB (a bare bytearray would stay untouched zero pages)
HOG = "b = b'x' * 2**30; print('survived')"


@pytest.fixture
def make_limits() -> Iterator[Callable[[str], Cgroups]]:
    """detect() under fresh root names; every group and parent is removed afterwards."""
    if os.geteuid() != 0:
        pytest.skip("cgroup limits need root")
    made: list[Cgroups] = []

    def make(prefix: str = "lakehub-test") -> Cgroups:
        limits = detect(f"{prefix}-{secrets.token_hex(4)}")
        if not isinstance(limits, Cgroups):
            pytest.skip(f"no usable cgroup memory and cpu controllers: {limits.reason}")
        made.append(limits)
        return limits

    try:
        yield make
    finally:
        for limits in made:
            for parent in limits.parents:
                for group in parent.iterdir() if parent.is_dir() else ():
                    if group.is_dir():
                        limits.release(group.name)
                if parent.is_dir():
                    parent.rmdir()


@pytest.fixture
def limits(make_limits: Callable[[str], Cgroups]) -> Cgroups:
    return make_limits("lakehub-test")


def run_in(procs: list[str], code: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """Run Python ``code`` in a child that joins the groups before it execs."""
    return subprocess.run(
        [sys.executable, "-c", code],
        preexec_fn=lambda: join(procs),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start_in(procs: list[str], *argv: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(argv, preexec_fn=lambda: join(procs))


def memory_limit_of(limits: Cgroups, key: str) -> int:
    group = limits.groups(key)[0]
    name = "memory.limit_in_bytes" if isinstance(limits, CgroupV1) else "memory.max"
    return int((group / name).read_text())


def test_memory_hog_is_oom_killed_and_its_parent_survives(limits: Cgroups) -> None:
    procs = limits.prepare("alice", 1, 300 * MiB)
    assert limits.oom_kills("alice") == 0
    # a small parent inside the group (like a server) starts a hog (like a kernel)
    parent = run_in(
        procs,
        f"import subprocess, sys\n"
        f"r = subprocess.run([sys.executable, '-c', {HOG!r}])\n"
        f"print('child', r.returncode)",
    )
    assert parent.returncode == 0, parent.stderr
    assert parent.stdout.split() == ["child", str(-signal.SIGKILL)]
    assert limits.oom_kills("alice") >= 1
    used = limits.memory_used("alice")
    assert used is not None and used < 300 * MiB


def test_process_outside_the_group_is_unaffected(limits: Cgroups) -> None:
    limits.prepare("alice", 1, 300 * MiB)
    outside = subprocess.run(
        [sys.executable, "-c", HOG], capture_output=True, text=True, timeout=30
    )
    assert outside.returncode == 0 and "survived" in outside.stdout, outside.stderr
    assert limits.oom_kills("alice") == 0


def test_cpu_quota_holds_a_busy_loop_to_half_a_core(limits: Cgroups) -> None:
    procs = limits.prepare("alice", 0.5, 512 * MiB)
    loop = textwrap.dedent("""
        import time
        wall, cpu = time.monotonic(), time.process_time()
        while time.monotonic() - wall < 1.5:
            pass
        print((time.process_time() - cpu) / (time.monotonic() - wall))
    """)
    busy = run_in(procs, loop)
    assert busy.returncode == 0, busy.stderr
    cores = float(busy.stdout)
    print(f"busy loop in a 0.5-CPU group: {cores:.2f} cores")
    assert 0 < cores < 0.75  # a ceiling: on a busy machine the loop may get even less


def test_release_kills_live_processes_and_removes_the_groups(limits: Cgroups) -> None:
    procs = limits.prepare("alice", 1, 300 * MiB)
    server = start_in(procs, "sh", "-c", "sleep 60 & sleep 60")  # a process with a child
    try:
        deadline = time.monotonic() + 5
        while len(Path(procs[0]).read_text().split()) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        used = limits.memory_used("alice")
        assert used is not None and used > 0
        t0 = time.monotonic()
        limits.release("alice")
        took = time.monotonic() - t0
        assert server.wait(timeout=5) == -signal.SIGKILL
        assert not any(group.exists() for group in limits.groups("alice"))
        assert took < 2, took
        assert limits.memory_used("alice") is None and limits.oom_kills("alice") == 0
        limits.release("alice")  # absent: no error
    finally:
        server.kill()
        server.wait()


def test_prepare_twice_resets_the_group(limits: Cgroups) -> None:
    procs = limits.prepare("alice", 1, 300 * MiB)
    assert run_in(procs, HOG).returncode == -signal.SIGKILL
    sleeper = start_in(procs, "sleep", "60")
    try:
        assert limits.oom_kills("alice") >= 1
        assert limits.prepare("alice", 2, 600 * MiB) == procs
        assert sleeper.wait(timeout=5) == -signal.SIGKILL  # leftovers of the last start
        assert limits.oom_kills("alice") == 0
        assert memory_limit_of(limits, "alice") == 600 * MiB
        assert all(Path(p).read_text() == "" for p in procs)
    finally:
        sleeper.kill()
        sleeper.wait()


def test_two_root_names_do_not_collide(make_limits: Callable[[str], Cgroups]) -> None:
    one, two = make_limits("lakehub-test-a"), make_limits("lakehub-test-b")
    procs_one = one.prepare("alice", 1, 300 * MiB)
    procs_two = two.prepare("alice", 1, 400 * MiB)
    assert not set(procs_one) & set(procs_two)
    two.release("alice")
    assert all(Path(p).exists() for p in procs_one)
    assert memory_limit_of(one, "alice") == 300 * MiB


def test_a_stopped_hub_leaves_no_group_behind(tmp_path: Path) -> None:
    """A hub's servers' and jobs' parents go once empty; a group that still holds a process
    stays (cgroupfs refuses), and its parent with it."""
    if os.geteuid() != 0:
        pytest.skip("cgroup limits need root")
    servers_name, jobs_name = hub_root_names(str(tmp_path))
    servers, jobs = detect(servers_name), detect(jobs_name)
    if not isinstance(servers, Cgroups) or not isinstance(jobs, Cgroups):
        pytest.skip("no usable cgroup memory and cpu controllers")
    servers.prepare("alice", 1, 300 * MiB)
    procs = jobs.prepare("run-1", 1, 300 * MiB)
    sleeper = start_in(procs, "sleep", "60")
    try:
        remove_hub_groups(str(tmp_path))
        assert not any(parent.exists() for parent in servers.parents)
        assert all(group.is_dir() for group in jobs.groups("run-1"))
        jobs.release("run-1")
        remove_hub_groups(str(tmp_path))
        assert not any(parent.exists() for parent in jobs.parents)
    finally:
        sleeper.kill()
        sleeper.wait()


def test_v2_release_kills_with_cgroup_kill() -> None:
    """release() on a real v2 tree, even one without memory and cpu controllers (as here)."""
    v2 = _mounts().get("cgroup2")
    if os.geteuid() != 0 or v2 is None:
        pytest.skip("needs root and a cgroup v2 hierarchy")
    limits = CgroupV2(v2 / f"lakehub-test-{secrets.token_hex(4)}")
    group = limits.groups("alice")[0]
    group.mkdir(parents=True)
    sleeper = start_in([str(group / "cgroup.procs")], "sleep", "60")  # inside once started
    try:
        assert (group / "cgroup.procs").read_text().split() == [str(sleeper.pid)]
        limits.release("alice")
        assert sleeper.wait(timeout=5) == -signal.SIGKILL
        assert not group.exists()
        assert limits.oom_kills("alice") == 0 and limits.memory_used("alice") is None
    finally:
        sleeper.kill()
        sleeper.wait()
        limits.release("alice")
        group.parent.rmdir()


def test_names_are_checked() -> None:
    for bad in ("", "../etc", "a/b", ".hidden", "-x", "a b", "x" * 129):
        with pytest.raises(ValueError):
            detect(bad)
        with pytest.raises(ValueError):
            NoLimits("test").prepare(bad, 1, GiB)


def test_without_root_limits_are_a_no_op_with_a_reason() -> None:
    if os.geteuid() != 0:
        limits = detect("lakehub-test")
        assert not limits.enforced and "not root" in limits.reason
        return
    # as nobody, with the system Python (the test venv may live in root's home)
    code = (
        "from lakehub.server.notebooks.limits import detect, join\n"
        "l = detect('lakehub-test-nobody')\n"
        "assert l.prepare('alice', 1, 2**30) == []; join([])\n"
        "print(l.enforced, l.reason)"
    )
    run = subprocess.run(
        ["/usr/bin/python3", "-c", code],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"},
        cwd="/",
        user=65534,
        group=65534,
        extra_groups=[],
        timeout=30,
    )
    assert run.returncode == 0, run.stderr
    enforced, reason = run.stdout.split(" ", 1)
    assert enforced == "False" and "not root" in reason, reason
    print(reason)


# -- the kernel launcher's guard (no root needed) -----------------------------------------


def test_guard_rule(capsys: pytest.CaptureFixture[str]) -> None:
    assert memory_rlimit(0) is None
    assert memory_rlimit(2 * GiB) == 2 * GiB + HEADROOM == 3 * GiB
    assert limit_from_env({}) == 0
    assert limit_from_env({"LAKEHUB_MEMORY_LIMIT": str(2 * GiB)}) == 2 * GiB
    assert limit_from_env({"LAKEHUB_MEMORY_LIMIT": "2GiB"}) == 0
    assert "ignoring LAKEHUB_MEMORY_LIMIT='2GiB'" in capsys.readouterr().err


STACK = """
import resource
print(resource.getrlimit(resource.RLIMIT_DATA)[0])
import duckdb, numpy as np, pandas as pd, polars as pl, pyarrow as pa
df = pd.DataFrame({"k": np.arange(200_000) % 7, "v": np.random.rand(200_000)})
t = pa.Table.from_pandas(df)
assert pl.from_arrow(t).group_by("k").agg(pl.col("v").sum()).height == 7
assert duckdb.sql("select count(distinct k) from t").fetchall() == [(7,)]
print("ok")
"""


def test_kernel_launcher_turns_an_oversized_allocation_into_a_memory_error(
    tmp_path: Path,
) -> None:
    jupyter_client = pytest.importorskip("jupyter_client")
    from jupyter_client.kernelspec import KernelSpecManager

    spec = tmp_path / "kernels" / "limited"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [
                    sys.executable,
                    "-m",
                    "lakehub.singleuser.kernel",
                    "-f",
                    "{connection_file}",
                ],
                "display_name": "limited",
                "language": "python",
                "env": {"LAKEHUB_MEMORY_LIMIT": str(2 * GiB)},
            }
        )
    )
    km = jupyter_client.KernelManager(
        kernel_name="limited", kernel_spec_manager=KernelSpecManager(kernel_dirs=[spec.parent])
    )
    km.start_kernel(cwd=str(tmp_path))
    kc = km.client()
    try:
        kc.start_channels()
        kc.wait_for_ready(timeout=30)

        def run(code: str) -> tuple[dict[str, str], str]:
            """Execute a cell; returns the reply's content and the cell's printed output."""
            out: list[str] = []

            def hook(msg: dict[str, Any]) -> None:
                if msg["msg_type"] == "stream":
                    out.append(msg["content"]["text"])

            reply = kc.execute_interactive(code, timeout=60, output_hook=hook)
            return reply["content"], "".join(out)

        # the everyday data stack works under the guard of the smallest size
        reply, out = run(STACK)
        assert reply["status"] == "ok", reply
        assert out.split()[:2] == [str(3 * GiB), "ok"]

        reply, _ = run("big = bytearray(3 * 2**30)")
        assert reply["status"] == "error"
        assert reply["ename"] == "MemoryError"
        assert "2.0 GiB" in reply["evalue"] and "larger size" in reply["evalue"]

        reply, out = run("print(6 * 7)")  # the same kernel, still alive
        assert reply["status"] == "ok" and out.split()[-1] == "42"
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
