"""Per-user unix accounts (``lh-<name>``) for isolated notebook servers. Needs root."""

from __future__ import annotations

import os
import pwd
import subprocess
from pathlib import Path


def unix_name(name: str) -> str:
    return f"lh-{name}"


def ensure_account(name: str, home: Path) -> pwd.struct_passwd:
    """The user's account, made on first use, with a home only it can enter."""
    account = unix_name(name)
    try:
        pw = pwd.getpwnam(account)
    except KeyError:
        subprocess.run(
            [
                "useradd",
                "--no-create-home",
                "--home-dir",
                str(home),
                "--shell",
                "/bin/bash",
                "--user-group",
                "--comment",
                f"LakeHub user {name}",
                account,
            ],
            check=True,
            capture_output=True,
        )
        pw = pwd.getpwnam(account)
    home.mkdir(parents=True, exist_ok=True)
    os.chown(home, pw.pw_uid, pw.pw_gid)
    os.chmod(home, 0o700)
    return pw


def remove_account(name: str) -> None:
    """Delete the user's account (its home and files stay, owned by the freed uid)."""
    try:
        pwd.getpwnam(unix_name(name))
    except KeyError:
        return
    subprocess.run(["userdel", unix_name(name)], check=True, capture_output=True)
