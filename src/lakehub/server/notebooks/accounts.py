"""Per-user unix accounts (``lh-<name>``) for isolated notebook servers. Needs root."""

from __future__ import annotations

import os
import pwd
import subprocess
import threading
import time
from pathlib import Path

from lakehub.server.config import Settings


def run_ids(settings: Settings, owner: str) -> tuple[int, int, list[int]] | None:
    """The ids to run ``owner``'s processes as (uid, gid, groups of their account, made on
    first use), or None when LakeHub does not run as root; their home exists either way."""
    home = settings.homes_dir / owner
    if not settings.isolated:
        home.mkdir(mode=0o700, parents=True, exist_ok=True)
        return None
    pw = ensure_account(owner, home)
    return pw.pw_uid, pw.pw_gid, os.getgrouplist(pw.pw_name, pw.pw_gid)


def unix_name(name: str) -> str:
    return f"lh-{name}"


_MAKING = threading.Lock()  # useradd run twice at once for one name can leave it two uids


def ensure_account(name: str, home: Path) -> pwd.struct_passwd:
    """The user's account, made on first use, with a home only it can enter."""
    with _MAKING:
        return _ensure_account(name, home)


def _ensure_account(name: str, home: Path) -> pwd.struct_passwd:
    account = unix_name(name)
    try:
        pw = pwd.getpwnam(account)
    except KeyError:
        made = subprocess.run(
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
            check=False,
            capture_output=True,
        )
        try:  # made here, or by another process at the same moment (useradd: exit 9)
            pw = pwd.getpwnam(account)
        except KeyError:
            made.check_returncode()
            raise
    home.mkdir(parents=True, exist_ok=True)
    os.chown(home, pw.pw_uid, pw.pw_gid)
    os.chmod(home, 0o700)
    return pw


def account_exists(name: str) -> bool:
    try:
        pwd.getpwnam(unix_name(name))
    except KeyError:
        return False
    return True


def remove_account(name: str, timeout: float = 10.0) -> None:
    """Stop every process left running as the user's account, then delete the account (its
    home and files stay, owned by the freed uid). Nothing to do if there is no account."""
    if not account_exists(name):
        return
    account = unix_name(name)
    deadline = time.monotonic() + timeout
    while True:
        subprocess.run(["pkill", "-KILL", "-u", account], capture_output=True, check=False)
        done = subprocess.run(["userdel", account], capture_output=True, check=False)
        if done.returncode == 0 or not account_exists(name):
            return
        if time.monotonic() > deadline:  # exit 8: still in use
            raise RuntimeError(
                f"cannot remove the account {account}: {done.stderr.decode().strip()}"
            )
        time.sleep(0.2)
