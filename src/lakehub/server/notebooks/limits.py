"""Memory and CPU limits for notebook servers, kernels included: one cgroup per server.

The contract (what the spawner calls)::

    limits = detect("lakehub-<hub id>")    # CgroupV2, CgroupV1 or NoLimits
    limits.enforced, limits.reason         # False and why, for the no-op
    procs = limits.prepare(key, cpus, memory)  # fresh group(s) with the limits set
    join(procs)                            # in the forked child, before setuid and exec
    limits.oom_kills(key), limits.memory_used(key)
    limits.release(key)                    # kill what is left, remove the group(s)

``key`` names one server (``alice``, ``alice--gpu2``: up to 128 letters, digits, ``.``,
``_``, ``-``; a key that is also a control file's name, like v1's ``tasks``, is a ValueError).
A server's processes, kernels included, share its group, so its size holds for all of them
together: memory over the limit is reclaimed and then the kernel OOM-kills the biggest
process in the group (usually a kernel; the server survives and Jupyter restarts the kernel).
``lakehub.singleuser.kernel`` adds a per-process guard that turns an allocation that can never fit
into a ``MemoryError``.

Decisions:

- Groups live at ``<hierarchy>/<root_name>/<key>``, at the top of each hierarchy as this
  process sees it (not below the hub's own cgroup): a v2 subtree below a cgroup that holds
  processes cannot enable controllers, and a restarted hub finds the groups of its previous
  run in the same place. ``root_name`` keeps two hubs on one machine apart. The parent stays
  when its last group goes (it is shared); :func:`remove_hub_groups` removes a stopped hub's
  empty groups and parents, so hubs that come and go leave nothing behind.
- v2 is used when its hierarchy has the memory and cpu controllers (they are enabled in
  ``cgroup.subtree_control`` on the way down); otherwise v1 with the ``memory`` and ``cpu``
  hierarchies; otherwise :class:`NoLimits`, whose ``reason`` says what was missing (usually
  "not root"). :func:`detect` probes by creating the parent, so a reason is never a guess.
- Swap cannot dodge the limit: v1 sets ``memory.memsw.limit_in_bytes`` to the same value
  (``memory.swappiness`` 0 when swap is not accounted), v2 sets ``memory.swap.max`` to 0.
- CPU: a CFS quota of ``cpus`` x 100 ms per 100 ms period (``cpu.cfs_quota_us`` /
  ``cpu.max``): a ceiling, not a share, so a server gets no more than its size even on an
  idle machine.
- ``prepare`` on an existing key releases it first: whatever a previous start left behind is
  killed and the OOM counter starts again at 0 (a fresh group is the only way to reset it).
- ``release`` kills with ``cgroup.kill`` (v2) or SIGKILL per process (v1; each pid is pinned
  with a pidfd and checked against the group again, so a reused pid is never hit), retries
  until the group is empty and removable, and gives up with ``TimeoutError`` after
  ``timeout`` seconds (a process stuck in the kernel cannot be killed any faster).
"""

from __future__ import annotations

import functools
import os
import re
import signal
import time
from contextlib import suppress
from pathlib import Path
from typing import Protocol

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
PERIOD_US = 100_000  # the CFS period; the quota is cpus * PERIOD_US
MIN_QUOTA_US = 1_000  # the kernel's lower bound for a quota


class Limits(Protocol):
    enforced: bool
    reason: str

    def prepare(self, key: str, cpus: float, memory: int) -> list[str]:
        """Create (or reset) the group(s) for one server and set the limits; returns the
        ``cgroup.procs`` files a process must write its pid to, to join."""
        ...

    def release(self, key: str) -> None:
        """Kill whatever is left in the group(s) and remove them; no error if absent."""
        ...

    def oom_kills(self, key: str) -> int:
        """How many processes the kernel OOM-killed in this group so far (0 if absent)."""
        ...

    def cpu_seconds(self, key: str) -> float | None:
        """CPU seconds the group's processes used so far (None: not measured here)."""
        ...

    def memory_used(self, key: str) -> int | None:
        """Bytes charged to the group now (page cache included), None if absent."""
        ...


class NoLimits:
    """The no-op: servers run unlimited; ``reason`` says why."""

    enforced = False

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def prepare(self, key: str, cpus: float, memory: int) -> list[str]:
        _check_name(key)
        return []

    def release(self, key: str) -> None:
        pass

    def oom_kills(self, key: str) -> int:
        return 0

    def memory_used(self, key: str) -> int | None:
        return None

    def cpu_seconds(self, key: str) -> float | None:
        return None


class Cgroups:
    """What v1 and v2 share: one directory per server below each parent."""

    enforced = True
    reason = ""
    _oom_file = _usage_file = ""  # in the memory group: "oom_kill N" lines, bytes in use

    def __init__(self, parents: list[Path], memory_parent: Path) -> None:
        self.parents = list(dict.fromkeys(parents))  # the directories holding the groups
        self._memory_parent = memory_parent

    def groups(self, key: str) -> list[Path]:
        _check_name(key)
        groups = [parent / key for parent in self.parents]
        for group in groups:  # e.g. a user named "tasks" next to v1's tasks file
            if group.exists() and not group.is_dir():
                raise ValueError(f"server key {key!r} collides with the cgroup file {group}")
        return groups

    def prepare(self, key: str, cpus: float, memory: int) -> list[str]:
        if not (cpus > 0 and memory > 0):
            raise ValueError(f"invalid limits for {key!r}: cpus={cpus}, memory={memory}")
        self.release(key)
        groups = self.groups(key)
        try:
            for group in groups:
                group.mkdir()
            self._set(key, max(MIN_QUOTA_US, round(cpus * PERIOD_US)), memory)
        except BaseException:
            self.release(key)
            raise
        return [str(group / "cgroup.procs") for group in groups]

    def release(self, key: str, timeout: float = 5.0) -> None:
        left = [group for group in self.groups(key) if group.is_dir()]
        deadline = time.monotonic() + timeout
        while left:
            for group in left:
                _kill_all(group)
            for group in list(left):
                try:
                    group.rmdir()
                except FileNotFoundError:
                    pass
                except OSError:  # EBUSY until the last process is gone
                    continue
                left.remove(group)
            if left and time.monotonic() > deadline:
                pids = sorted({pid for group in left for pid in _pids(group)})
                raise TimeoutError(
                    f"could not remove {', '.join(map(str, left))} within "
                    f"{timeout} s; processes still inside: {pids}"
                )
            if left:
                time.sleep(0.02)

    def oom_kills(self, key: str) -> int:
        return _field(self._memory_parent / key / self._oom_file, "oom_kill") or 0

    def memory_used(self, key: str) -> int | None:
        with suppress(OSError, ValueError):
            return int((self._memory_parent / key / self._usage_file).read_text())
        return None

    def cpu_seconds(self, key: str) -> float | None:
        """v2: ``cpu.stat``; v1: ``cpuacct.usage`` where cpuacct shares cpu's hierarchy, else the
        user and system time of the processes in the group now (a kernel that ended takes its
        share along)."""
        for parent in self.parents:
            with suppress(OSError, ValueError, StopIteration):
                lines = (parent / key / "cpu.stat").read_text().splitlines()
                return next(int(x.split()[1]) for x in lines if x.startswith("usage_usec")) / 1e6
            with suppress(OSError, ValueError):
                return int((parent / key / "cpuacct.usage").read_text()) / 1e9
        try:
            pids = (self.parents[-1] / key / "cgroup.procs").read_text().split()
        except OSError:
            return None
        ticks = 0
        for pid in pids:
            with suppress(OSError, ValueError, IndexError):
                fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
                ticks += int(fields[11]) + int(fields[12])  # utime, stime
        return ticks / os.sysconf("SC_CLK_TCK")

    def _set(self, key: str, quota_us: int, memory: int) -> None:
        raise NotImplementedError


class CgroupV1(Cgroups):
    """cgroup v1: the ``memory`` and ``cpu`` hierarchies (two groups per server, or one when
    both controllers share a hierarchy)."""

    _oom_file, _usage_file = "memory.oom_control", "memory.usage_in_bytes"

    def __init__(self, memory_parent: Path, cpu_parent: Path) -> None:
        super().__init__([memory_parent, cpu_parent], memory_parent)
        self._cpu_parent = cpu_parent

    def _set(self, key: str, quota_us: int, memory: int) -> None:
        memory_group, cpu_group = self._memory_parent / key, self._cpu_parent / key
        _write(memory_group / "memory.limit_in_bytes", memory)  # memsw must stay >= this
        if (memory_group / "memory.memsw.limit_in_bytes").exists():
            _write(memory_group / "memory.memsw.limit_in_bytes", memory)
        else:
            _write(memory_group / "memory.swappiness", 0)
        _write(cpu_group / "cpu.cfs_period_us", PERIOD_US)
        _write(cpu_group / "cpu.cfs_quota_us", quota_us)


class CgroupV2(Cgroups):
    """cgroup v2: one group per server with ``memory.max``, ``memory.swap.max`` and
    ``cpu.max``."""

    _oom_file, _usage_file = "memory.events", "memory.current"

    def __init__(self, parent: Path) -> None:
        super().__init__([parent], parent)

    def _set(self, key: str, quota_us: int, memory: int) -> None:
        group = self._memory_parent / key
        _write(group / "memory.max", memory)
        if (group / "memory.swap.max").exists():
            _write(group / "memory.swap.max", 0)
        _write(group / "cpu.max", f"{quota_us} {PERIOD_US}")


@functools.cache
def of_hub(hub_id: str) -> Limits:
    """One hub's limits as its spawner sees them (``hub_id``: its data directory), detected
    once per process: what the control plane reads (memory used, CPU, OOM kills)."""
    return detect(root_name_for(hub_id))


def root_name_for(hub_id: str) -> str:
    """The parent group of one hub's servers (``hub_id``: its data directory)."""
    import hashlib

    return "lakehub-" + hashlib.sha256(hub_id.encode()).hexdigest()[:10]


def jobs_root_name(data_dir: str) -> str:
    """The parent group of one hub's job runs."""
    return root_name_for(f"{data_dir}-jobs")


def hub_root_names(data_dir: str) -> list[str]:
    """The parents of one hub's groups: its servers' and endpoints', and its jobs'."""
    return [root_name_for(data_dir), jobs_root_name(data_dir)]


def remove_hub_groups(data_dir: str) -> None:
    """Remove the groups of a stopped hub that hold no process, then their parents (cgroupfs
    refuses to remove a group that still holds one: those stay)."""
    for mount in _mounts().values():
        for name in hub_root_names(data_dir):
            parent = mount / name
            if not parent.is_dir():
                continue
            for group in parent.iterdir():
                if group.is_dir():
                    with suppress(OSError):
                        group.rmdir()
            with suppress(OSError):
                parent.rmdir()


def server_key(user: str, server: str) -> str:
    return f"{user}--{server or 'default'}"


def detect(root_name: str = "lakehub") -> Limits:
    """The limits this machine can enforce for servers grouped under ``root_name``."""
    _check_name(root_name)
    mounts = _mounts()
    reasons = [] if os.geteuid() == 0 else [f"not root (euid {os.geteuid()})"]
    v2 = mounts.get("cgroup2")
    if v2 is not None:
        have = (v2 / "cgroup.controllers").read_text().split()
        if {"memory", "cpu"} <= set(have):
            try:
                for directory in (v2, v2 / root_name):
                    directory.mkdir(exist_ok=True)
                    enabled = (directory / "cgroup.subtree_control").read_text().split()
                    if not {"memory", "cpu"} <= set(enabled):
                        _write(directory / "cgroup.subtree_control", "+memory +cpu")
                return CgroupV2(v2 / root_name)
            except OSError as e:
                reasons.append(f"cgroup v2 at {v2}: cannot enable memory and cpu: {e.strerror}")
        else:
            reasons.append(
                f"cgroup v2 at {v2} has no memory and cpu controllers "
                f"(available: {' '.join(have) or 'none'})"
            )
    if "memory" in mounts and "cpu" in mounts:
        parents = mounts["memory"] / root_name, mounts["cpu"] / root_name
        try:
            for parent in parents:
                parent.mkdir(exist_ok=True)
            return CgroupV1(*parents)
        except OSError as e:
            reasons.append(f"cgroup v1: cannot create {e.filename}: {e.strerror}")
    else:
        reasons.append("no cgroup v1 memory and cpu hierarchies")
    return NoLimits("; ".join(reasons))


def join(procs_files: list[str], pid: int = 0) -> None:
    """Move ``pid`` (0: this process) into the groups; for a forked child before setuid and
    exec, so the server and everything it starts is inside from its first instruction."""
    data = str(pid or os.getpid()).encode()
    for path in procs_files:
        fd = os.open(path, os.O_WRONLY)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)


def _check_name(name: str) -> None:
    if not _NAME.fullmatch(name):
        raise ValueError(
            f"invalid cgroup name {name!r}: 1-128 of letters, digits, '.', '_' "
            "and '-', starting with a letter or digit"
        )


def _mounts() -> dict[str, Path]:
    """Mount points from /proc/self/mountinfo: "cgroup2", and each v1 controller's name."""
    mounts: dict[str, Path] = {}
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields, _, tail = line.partition(" - ")
        fstype, _source, options = (tail.split() + ["", "", ""])[:3]
        point = Path(re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), fields.split()[4]))
        if fstype == "cgroup2":
            mounts.setdefault("cgroup2", point)
        elif fstype == "cgroup":
            for option in options.split(","):
                if option in ("memory", "cpu"):
                    mounts.setdefault(option, point)
    return mounts


def _write(path: Path, value: object) -> None:
    try:
        path.write_text(str(value))
    except OSError as e:
        raise OSError(e.errno, f"cannot write {value!r} to {path}: {e.strerror}") from e


def _field(path: Path, name: str) -> int | None:
    """The value of a ``name N`` line in a cgroup stat file; None if absent."""
    with suppress(OSError):
        for line in path.read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == name:
                return int(value)
    return None


def _pids(group: Path) -> list[int]:
    with suppress(OSError):
        return [int(pid) for pid in (group / "cgroup.procs").read_text().split()]
    return []


def _kill_all(group: Path) -> None:
    """SIGKILL every process in ``group``."""
    kill = group / "cgroup.kill"
    if kill.exists():  # v2 (Linux 5.14+): atomic, catches processes forked meanwhile
        with suppress(OSError):
            _write(kill, 1)
            return
    pidfds: dict[int, int] = {}
    try:
        for pid in _pids(group):
            try:
                pidfds[pid] = os.pidfd_open(pid)
            except ProcessLookupError:
                pass
            except OSError:  # no pidfd_open (Linux < 5.3): a plain kill, with the reuse race
                with suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        inside = set(_pids(group))  # still inside once pinned: the pidfd is that process
        for pid, fd in pidfds.items():
            if pid in inside:
                with suppress(ProcessLookupError):
                    signal.pidfd_send_signal(fd, signal.SIGKILL)
    finally:
        for fd in pidfds.values():
            os.close(fd)
