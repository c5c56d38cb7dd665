"""Another "host" for scale-out tests: a network namespace joined to this one by a veth pair
with private addresses. It is always removed."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


def unusable() -> str:
    """Why a namespace cannot be made here; "" when it can."""
    if os.geteuid() != 0:
        return "needs root to create a network namespace"
    if shutil.which("ip") is None:
        return "the 'ip' command (iproute2) is missing"
    probe = f"lhprobe{secrets.token_hex(2)}"
    try:
        ip("netns", "add", probe)
    except (subprocess.CalledProcessError, OSError) as err:
        return f"'ip netns' does not work here: {err}"
    ip("netns", "delete", probe)
    return ""


@contextlib.contextmanager
def other_host(prefix: str) -> Iterator[tuple[str, str, str]]:
    """(namespace, this host's address on the link, the namespace's address), on a random /30
    of ``prefix`` (two octets, e.g. "10.231")."""
    tag = secrets.token_hex(3)
    ns, here_if, there_if = f"lhns{tag}", f"lh{tag}a", f"lh{tag}b"
    third, fourth = 16 + secrets.randbelow(200), secrets.randbelow(64) * 4
    here, there = f"{prefix}.{third}.{fourth + 1}", f"{prefix}.{third}.{fourth + 2}"
    try:
        ip("netns", "add", ns)
        ip("link", "add", here_if, "type", "veth", "peer", "name", there_if)
        ip("link", "set", there_if, "netns", ns)
        ip("addr", "add", f"{here}/30", "dev", here_if)
        ip("link", "set", here_if, "up")
        ip("-n", ns, "addr", "add", f"{there}/30", "dev", there_if)
        ip("-n", ns, "link", "set", there_if, "up")
        ip("-n", ns, "link", "set", "lo", "up")
        yield ns, here, there
    finally:
        subprocess.run(["ip", "link", "delete", here_if], capture_output=True, timeout=30)
        subprocess.run(["ip", "netns", "delete", ns], capture_output=True, timeout=30)
