"""`lakehub lake ls | cp | rm | mb` as a user, with the user's own token."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import Hub


def lake(hub: Hub, name: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "LAKEHUB_"))}
    env |= {"LAKEHUB_API_URL": hub.url, "LAKEHUB_TOKEN": hub.token(name)}
    return subprocess.run(
        [sys.executable, "-m", "lakehub.cli", "lake", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def test_copy_a_large_file_up_and_down_list_and_remove(hub: Hub, new_user, tmp_path: Path) -> None:
    name = new_user()
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(20 * 1024 * 1024))  # multipart, with a progress bar
    out = lake(hub, name, "mb", f"s3://{name}-data")
    assert out.returncode == 0 and f"made s3://{name}-data" in out.stdout, out.stderr
    out = lake(hub, name, "cp", str(big), f"s3://{name}-data/in/")
    assert out.returncode == 0, out.stderr
    assert f"uploaded {big} to s3://{name}-data/in/big.bin" in out.stdout
    assert "big.bin" in out.stderr  # the progress bar's label
    listing = lake(hub, name, "ls", f"s3://{name}-data/").stdout
    assert f"DIR  s3://{name}-data/in/" in listing
    listing = lake(hub, name, "ls", f"s3://{name}-data/in/").stdout
    assert f"{20 * 1024 * 1024}  s3://{name}-data/in/big.bin" in listing
    assert f"{name}-data" in lake(hub, name, "ls").stdout
    back = tmp_path / "back.bin"
    out = lake(hub, name, "cp", f"s3://{name}-data/in/big.bin", str(back))
    assert out.returncode == 0, out.stderr
    assert back.read_bytes() == big.read_bytes()
    assert lake(hub, name, "rm", f"s3://{name}-data/in/big.bin").returncode == 0
    out = lake(hub, name, "rm", f"s3://{name}-data/in/big.bin")
    assert out.returncode == 1 and out.stderr.startswith("error: ")
    (tmp_path / "a.txt").write_text("a")
    for key in ("x/1.txt", "x/2.txt"):
        lake(hub, name, "cp", str(tmp_path / "a.txt"), f"s3://{name}-data/{key}")
    out = lake(hub, name, "rm", "--recursive", "--yes", f"s3://{name}-data/x/")
    assert out.returncode == 0 and "removed 2 objects" in out.stdout


def test_clear_errors_and_no_reach_into_others(hub: Hub, new_user, tmp_path: Path) -> None:
    a, b = new_user("a"), new_user("b")
    (tmp_path / "f.txt").write_text("f")
    cases = [
        (("ls", f"s3://{a}-home/"), f"error: access denied: s3://{a}-home/"),
        (("cp", str(tmp_path / "f.txt"), f"s3://{a}-home/f.txt"), "error: access denied"),
        (("mb", f"s3://{a}-stolen"), f"error: access denied: s3://{a}-stolen"),
        (("cp", f"s3://{b}-home/missing.txt", str(tmp_path)), "error: not found"),
        (("ls", "not-an-address"), "is not an s3://bucket/key address"),
        (("cp", "x", "y"), "exactly one of SRC and DST must be an s3:// address"),
    ]
    for args, message in cases:
        out = lake(hub, b, *args)
        assert out.returncode == 1, args
        assert message in out.stderr, (args, out.stderr)
        assert "Traceback" not in out.stderr
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "LAKEHUB_"))}
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "lakehub.cli",
            "lake",
            "ls",
            "--hub",
            hub.url,
            "--token",
            "not-a-token",
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    assert out.returncode == 1 and out.stderr.strip() == "error: invalid or expired token"
