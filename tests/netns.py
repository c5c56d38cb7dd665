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


@contextlib.contextmanager
def hosts(prefix: str, count: int) -> Iterator[tuple[str, list[tuple[str, str]]]]:
    """``count`` hosts on one link: this host's address, then (namespace, address) of each, all
    on a random /24 of ``prefix`` (two octets, e.g. "10.232") joined by a bridge, so every host
    reaches every other. Always removed."""
    tag = secrets.token_hex(3)
    bridge, third = f"lhbr{tag}", 16 + secrets.randbelow(200)
    here = f"{prefix}.{third}.1"
    made: list[tuple[str, str]] = []
    try:
        ip("link", "add", bridge, "type", "bridge")
        ip("addr", "add", f"{here}/24", "dev", bridge)
        ip("link", "set", bridge, "up")
        for n in range(count):
            ns, here_if, there_if = f"lhns{tag}{n}", f"lh{tag}{n}a", f"lh{tag}{n}b"
            address = f"{prefix}.{third}.{n + 2}"
            ip("netns", "add", ns)
            made.append((ns, address))
            ip("link", "add", here_if, "type", "veth", "peer", "name", there_if)
            ip("link", "set", here_if, "master", bridge)
            ip("link", "set", here_if, "up")
            ip("link", "set", there_if, "netns", ns)
            ip("-n", ns, "addr", "add", f"{address}/24", "dev", there_if)
            ip("-n", ns, "link", "set", there_if, "up")
            ip("-n", ns, "link", "set", "lo", "up")
        yield here, made
    finally:
        for n, (ns, _) in enumerate(made):
            subprocess.run(
                ["ip", "link", "delete", f"lh{tag}{n}a"], capture_output=True, timeout=30
            )
            subprocess.run(["ip", "netns", "delete", ns], capture_output=True, timeout=30)
        subprocess.run(["ip", "link", "delete", bridge], capture_output=True, timeout=30)
