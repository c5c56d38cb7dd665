"""Shared helpers for the LakeHub benchmarks; hubs start through the tests' launcher
(``tests/hubs.py``), so a benchmark's hub is the tests' hub.

Every process a benchmark starts carries a *marker*, the benchmark's private temporary
directory, in its command line or environment (``BENCH_MARK=<dir>``, data directories, homes).
After each run :func:`leftovers` scans ``/proc`` for that marker, so a process that outlived its
run is found even when it left its process group (JupyterHub's own proxy, forked servers).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
PROJECT = BENCH_DIR.parent
RESULTS = BENCH_DIR / "results"
VENV_BIN = Path(sys.executable).parent

# the hub launcher is the tests' (tests/hubs.py): one way to start a hub, for both
if str(PROJECT / "tests") not in sys.path:
    sys.path.append(str(PROJECT / "tests"))
from hubs import API as API  # noqa: E402
from hubs import Hub as Hub  # noqa: E402
from hubs import S3Service as S3Service  # noqa: E402
from hubs import free_port as free_port  # noqa: E402
from hubs import hub_dir as hub_dir  # noqa: E402
from hubs import lake_cluster as lake_cluster  # noqa: E402
from hubs import s3_for as s3_for  # noqa: E402


# ---------------------------------------------------------------------------------- network
def http_status(
    url: str, timeout: float = 1.0, headers: dict[str, str] | None = None
) -> int | None:
    """The HTTP status ``url`` answers with (redirects not followed), or None if no answer.

    ``unix:<path>`` and ``tcp:<host>:<port>`` URLs answer 200 when they accept a connection.
    """
    if url.startswith(("unix:", "tcp:")):
        from lakehub.server.supervisor import probe

        return 200 if probe(url, timeout) else None

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    opener = urllib.request.build_opener(NoRedirect)
    req = urllib.request.Request(url, headers=headers or {})  # noqa: S310 (loopback only)
    try:
        with opener.open(req, timeout=timeout) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as err:
        return int(err.code)
    except (OSError, ValueError):
        return None


def healthy(url: str, timeout: float = 1.0) -> bool:
    """The product's own criterion: any HTTP answer below 500."""
    code = http_status(url, timeout)
    return code is not None and code < 500


# ---------------------------------------------------------------------------------- processes
def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b""


def leftovers(marker: str) -> list[tuple[int, str]]:
    """Live processes whose command line or environment mentions ``marker``."""
    me = os.getpid()
    mark = marker.encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        stat = _read(entry / "stat")
        if not stat or b") Z " in stat:  # gone, or a zombie waiting for its parent
            continue
        cmdline = _read(entry / "cmdline")
        if mark in cmdline or mark in _read(entry / "environ"):
            found.append((int(entry.name), cmdline.replace(b"\0", b" ").decode(errors="replace")))
    return found


def proc_start_wall(pid: int) -> float | None:
    """Wall-clock time at which process ``pid`` was created (10 ms resolution), if still known."""
    stat = _read(Path(f"/proc/{pid}/stat")).decode(errors="replace")
    if not stat:
        return None
    ticks = int(stat.rsplit(")", 1)[1].split()[19])
    btime = next(
        int(ln.split()[1])
        for ln in _read(Path("/proc/stat")).decode().splitlines()
        if ln.startswith("btime")
    )
    return btime + ticks / os.sysconf("SC_CLK_TCK")


def cpu_by_process(marker: str) -> dict[int, float]:
    """pid -> user + system CPU seconds used so far by each live marked process (with its
    reaped children)."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for pid, _ in leftovers(marker):
        stat = _read(Path(f"/proc/{pid}/stat")).decode(errors="replace")
        if stat:
            f = stat.rsplit(")", 1)[1].split()
            out[pid] = sum(int(x) for x in f[11:15]) / tick  # utime stime cutime cstime
    return out


def cpu_seconds(marker: str) -> float:
    return sum(cpu_by_process(marker).values())


def reap(marker: str, wait: float = 10.0) -> list[str]:
    """Wait (bounded) for marked processes to go; SIGKILL and report whatever is still there."""
    deadline = time.monotonic() + wait
    left = leftovers(marker)
    while left and time.monotonic() < deadline:
        time.sleep(0.2)
        left = leftovers(marker)
    report = [f"{pid} {cmd[:160]}" for pid, cmd in left]
    for pid, _ in left:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    return report


def kill_groups(procs: Iterable[subprocess.Popen[bytes]], grace: float = 10.0) -> None:
    """SIGTERM each process group, wait up to ``grace`` s, then SIGKILL what is left."""
    procs = list(procs)
    for p in procs:
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(p.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for p in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(p.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.wait(timeout=5)


def bench_hub(root: Path, sub: str = "data", **settings: str) -> Hub:
    """A hub not started yet, in ``root/sub``, its processes marked with ``root``."""
    hub: Hub = Hub.create(root / sub, {"BENCH_MARK": str(root)}, **settings)
    return hub


def up_with_user(hub: Hub) -> tuple[str, str]:
    """Up, with one regular user from ``lakehub user add``; the hub's URL and the user's API
    token (from ``lakehub user token``)."""
    hub.up(timeout=900)
    name = f"bench{secrets.token_hex(3)}"
    hub.add_user(name)
    return hub.url, hub.token(name)


def bench_root(name: str) -> Path:
    """The run's private folder (``/tmp/lakehub-bench-NAME-*``), also its marker."""
    return hub_dir(prefix=f"lakehub-bench-{name}-")


def hub_down(hub: Hub, root: Path, keep: bool, wait: float = 5) -> list[str]:
    """Down, every process of the run reaped, the folder removed unless ``keep``; what went
    wrong on the way."""
    problems = hub.down()
    problems += reap(str(root), wait=wait)
    if not keep:
        shutil.rmtree(root, ignore_errors=True)
    return problems


def remove_accounts(root: Path) -> list[str]:
    """``userdel`` the ``lh-`` accounts whose homes are under ``root`` (the run's users');
    what went wrong."""
    import pwd

    problems = []
    for pw in pwd.getpwall():
        if pw.pw_name.startswith("lh-") and pw.pw_dir.startswith(f"{root}/"):
            done = subprocess.run(
                ["userdel", pw.pw_name], capture_output=True, text=True, timeout=30
            )
            if done.returncode != 0:
                problems.append(f"userdel {pw.pw_name}: {done.stderr.strip()}")
    return problems


def wait_until(pred: Callable[[], Any], timeout: float, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(interval)
    return None


def install_sigterm() -> None:
    """Turn SIGTERM into SystemExit so ``finally`` blocks clean up."""

    def handler(*_: Any) -> None:
        raise SystemExit(143)

    signal.signal(signal.SIGTERM, handler)


# ---------------------------------------------------------------------------------- statistics
def percentile(xs: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    s = sorted(xs)
    if not s:
        return math.nan
    pos = (len(s) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def summary(xs: Sequence[float]) -> dict[str, float]:
    if not xs:
        return {
            "n": 0,
            "median": math.nan,
            "p95": math.nan,
            "min": math.nan,
            "max": math.nan,
            "mean": math.nan,
        }
    return {
        "n": len(xs),
        "median": percentile(xs, 0.5),
        "p95": percentile(xs, 0.95),
        "min": min(xs),
        "max": max(xs),
        "mean": sum(xs) / len(xs),
    }


def ratio(a: float, b: float) -> float:
    return a / b if b and not math.isnan(a) and not math.isnan(b) else math.nan


def fmt(x: float | None, unit: str = "", digits: int = 2) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:.{digits}f}{unit}"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain-text table: first column left-aligned, the others right-aligned."""
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]

    def line(r: Sequence[str]) -> str:
        return "  ".join(
            str(c).ljust(widths[i]) if i == 0 else str(c).rjust(widths[i]) for i, c in enumerate(r)
        )

    sep = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), sep, *(line(r) for r in rows)])


def stats_rows(
    label_a: str, a: Sequence[float], label_b: str, b: Sequence[float], cols: Sequence[str]
) -> list[list[str]]:
    """Rows for two sample sets and the ratio a/b of each statistic."""
    sa, sb = summary(a), summary(b)
    rows = [
        [label_a, str(sa["n"]), *(fmt(sa[c]) for c in cols)],
        [label_b, str(sb["n"]), *(fmt(sb[c]) for c in cols)],
        ["ratio LakeHub/anchor", "", *(fmt(ratio(sa[c], sb[c]), "x") for c in cols)],
    ]
    return rows


# ---------------------------------------------------------------------------------- logs
# "[I 2026-11-21 22:07:21.863 JupyterHub app:3493] message"  (hub and single-user servers)
JUPYTER_LINE = re.compile(
    r"^\[(?P<level>[A-Z]) (?P<ts>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) (?P<name>[^\s\]]+)"
    r"[^\]]*\]\s?(?P<msg>.*)$"
)
# "2026-11-21 22:07:17,110 lakehub.server.supervisor started lake (pid 9500)"
PY_LINE = re.compile(r"^(?P<ts>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) (?P<name>\S+) (?P<msg>.*)$")
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def jupyter_events(path: Path) -> list[tuple[float, str, str]]:
    """(epoch seconds, logger name, message) for each timestamped line of a Jupyter log."""
    out = []
    for raw in _read(path).decode(errors="replace").splitlines():
        m = JUPYTER_LINE.match(ANSI.sub("", raw))
        if m:
            ts = datetime.strptime(m["ts"], "%Y-%m-%d %H:%M:%S.%f").timestamp()
            out.append((ts, m["name"], m["msg"]))
    return out


def py_events(path: Path) -> list[tuple[float, str, str]]:
    out = []
    for raw in _read(path).decode(errors="replace").splitlines():
        m = PY_LINE.match(raw)
        if m:
            ts = datetime.strptime(m["ts"], "%Y-%m-%d %H:%M:%S,%f").timestamp()
            out.append((ts, m["name"], m["msg"]))
    return out


# ---------------------------------------------------------------------------------- context
def host_info() -> dict[str, Any]:
    def git(*args: str) -> str:
        try:
            return subprocess.run(
                ["git", *args], cwd=PROJECT, capture_output=True, text=True, timeout=10
            ).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return ""

    return {
        "when": datetime.now().isoformat(timespec="seconds"),
        "host": platform.node(),
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
        "loadavg_start": os.getloadavg(),
        "euid": os.geteuid(),
        "git_head": git("rev-parse", "--short", "HEAD"),
        "git_dirty": git("status", "--short", "--untracked-files=no").splitlines(),
    }


def write_results(name: str, data: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    data.setdefault("host", {})["loadavg_end"] = os.getloadavg()
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")
    return path


def other_load_note() -> str:
    """Processes of the same kinds that this benchmark did not start (they share the CPUs)."""
    names = (b"weed", b"jupyterhub", b"traefik", b"configurable-http-proxy", b"uvicorn", b"pytest")
    n = 0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and any(x in _read(entry / "cmdline") for x in names):
            n += 1
    return f"{n} weed/jupyterhub/proxy/uvicorn/pytest processes not started by this run"


def print_footer(started: float, info: dict[str, Any], problems: list[str], label: str) -> float:
    """The closing lines of every benchmark: what went wrong, how long, under what load.

    Returns the benchmark's total seconds."""
    total = time.perf_counter() - started
    print(f"{label}: {len(problems)}" + "".join(f"\n  {p}" for p in problems))
    print(
        f"total benchmark time: {total:.0f} s; load average at start "
        f"{', '.join(f'{x:.2f}' for x in info['loadavg_start'])} ({info['other_load']})"
    )
    return total


# ---------------------------------------------------------------------------------- wrk
def wrk_binary() -> str:
    found = shutil.which("wrk")
    if not found:
        raise SystemExit("wrk is not installed: apt-get install -y wrk")
    return found


UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


def to_ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    if not m:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(m[1]) * UNITS[m[2]]


def parse_wrk(out: str) -> dict[str, Any]:
    """The figures of one wrk run, from its text output (with ``--latency``)."""
    pct = {int(m[1]): to_ms(m[2]) for m in re.finditer(r"^\s+(\d+)%\s+(\S+)\s*$", out, re.M)}
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", out, re.M)
    total = re.search(r"^\s+(\d+) requests in ([\d.]+\w+),", out, re.M)
    if not rps or not total or 50 not in pct or 99 not in pct:
        raise RuntimeError(f"wrk's output is not understood:\n{out}")
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    kinds = ("connect", "read", "write", "timeout")
    socket_errors = dict(zip(kinds, map(int, sock.groups()), strict=True)) if sock else {}
    return {
        "rps": float(rps[1]),
        "requests": int(total[1]),
        "seconds": to_ms(total[2]) / 1000,
        "p50_ms": pct[50],
        "p75_ms": pct.get(75),
        "p90_ms": pct.get(90),
        "p99_ms": pct[99],
        "http_errors": int(non2xx[1]) if non2xx else 0,
        "socket_errors": socket_errors,
        "errors": (int(non2xx[1]) if non2xx else 0) + sum(socket_errors.values()),
    }
