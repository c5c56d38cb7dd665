"""Third-party S3 clients against the lake with a user's own keys: Debian's awscli and s3cmd.

Each client is configured through its environment and a temporary config file; nothing is
written into the home of the account running the tests. In-process (tests/inproc.py): the keys
come from the in-process API, the lake is real.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
from pathlib import Path
from typing import Any

import pytest

from conftest import creds_of, s3_for
from inproc import InProc

AWS, S3CMD = "/usr/bin/aws", "/usr/bin/s3cmd"
MIB = 1024 * 1024

pytestmark = pytest.mark.skipif(
    not (Path(AWS).exists() and Path(S3CMD).exists()),
    reason="awscli/s3cmd missing: run scripts/install-system-packages.sh test",
)


class Clients:
    """awscli and s3cmd for one user, with their config in a private directory."""

    def __init__(self, creds: dict[str, str], home: Path) -> None:
        home.mkdir(mode=0o700)
        self.endpoint = creds["endpoint_url"]
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "S3CMD"))}
        (home / "aws-config").write_text(
            "[default]\nregion = us-east-1\ns3 =\n"
            "  multipart_threshold = 8MB\n  multipart_chunksize = 8MB\n"
        )
        self.env |= {
            "HOME": str(home),
            "AWS_CONFIG_FILE": str(home / "aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(home / "aws-credentials"),  # absent on purpose
            "AWS_ACCESS_KEY_ID": creds["access_key_id"],
            "AWS_SECRET_ACCESS_KEY": creds["secret_access_key"],
            "AWS_PAGER": "",
        }
        host = self.endpoint.removeprefix("http://")
        self.s3cfg = home / "s3cfg"
        self.s3cfg.write_text(
            "[default]\n"
            f"access_key = {creds['access_key_id']}\nsecret_key = {creds['secret_access_key']}\n"
            f"host_base = {host}\nhost_bucket = {host}\nuse_https = False\n"
            "signature_v2 = False\nbucket_location = us-east-1\nmultipart_chunk_size_mb = 5\n"
        )

    def run(self, argv: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(argv, capture_output=True, text=True, env=self.env, timeout=120)

    def aws(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.run([AWS, "--endpoint-url", self.endpoint, *args])

    def s3cmd(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.run([S3CMD, "-c", str(self.s3cfg), "--no-progress", *args])


def ok(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, (proc.args, proc.stdout, proc.stderr)
    return proc.stdout


def refused(proc: subprocess.CompletedProcess[str]) -> None:
    assert proc.returncode != 0, (proc.args, proc.stdout)
    assert re.search(r"AccessDenied|Access Denied|was denied|\b403\b", proc.stderr), proc.stderr


@pytest.fixture
def user(inproc: InProc, inproc_user: Any, tmp_path: Path) -> Any:
    def make(prefix: str = "cli") -> tuple[str, Clients]:
        name = inproc_user(prefix)
        return name, Clients(creds_of(inproc, name), tmp_path / name)

    return make


def test_awscli_round_trip_and_multipart(inproc: InProc, user: Any, tmp_path: Path) -> None:
    name, c = user()
    bucket = f"{name}-aws"
    assert ok(c.aws("s3", "mb", f"s3://{bucket}")).strip() == f"make_bucket: {bucket}"
    listed = ok(c.aws("s3", "ls")).split()
    assert bucket in listed and f"{name}-home" in listed
    up, down = tmp_path / "up", tmp_path / "down"
    up.mkdir()
    (up / "small.txt").write_text("hello from awscli\n")
    (up / "big.bin").write_bytes(os.urandom(20 * MIB + 3))
    ok(c.aws("s3", "cp", "--recursive", str(up), f"s3://{bucket}/dir/"))
    listing = ok(c.aws("s3", "ls", f"s3://{bucket}/dir/"))
    assert f"{20 * MIB + 3} big.bin" in listing and "18 small.txt" in listing
    head = json.loads(ok(c.aws("s3api", "head-object", "--bucket", bucket, "--key", "dir/big.bin")))
    assert head["ETag"].strip('"').endswith("-3")  # multipart: three 8 MiB parts
    ok(c.aws("s3", "cp", "--recursive", f"s3://{bucket}/dir/", str(down)))
    for f in ("small.txt", "big.bin"):
        assert (down / f).read_bytes() == (up / f).read_bytes(), f
    ok(c.aws("s3", "rm", "--recursive", f"s3://{bucket}/dir/"))
    assert ok(c.aws("s3", "ls", f"s3://{bucket}/", "--recursive")) == ""


def test_s3cmd_round_trip_and_multipart(inproc: InProc, user: Any, tmp_path: Path) -> None:
    name, c = user()
    bucket = f"{name}-s3cmd"
    assert f"Bucket 's3://{bucket}/' created" in ok(c.s3cmd("mb", f"s3://{bucket}"))
    assert f"s3://{bucket}" in ok(c.s3cmd("ls"))
    small, big = tmp_path / "small.txt", tmp_path / "big.bin"
    small.write_text("hello from s3cmd\n")
    big.write_bytes(os.urandom(12 * MIB + 5))
    ok(c.s3cmd("put", str(small), f"s3://{bucket}/small.txt"))
    ok(c.s3cmd("put", str(big), f"s3://{bucket}/big.bin"))  # 5 MiB parts
    listing = ok(c.s3cmd("ls", f"s3://{bucket}/"))
    assert re.search(rf"\s{12 * MIB + 5}\s+s3://{bucket}/big.bin$", listing, re.M), listing
    etag = s3_for(creds_of(inproc, name)).head_object(Bucket=bucket, Key="big.bin")["ETag"]
    assert etag.strip('"').endswith("-3")
    ok(c.s3cmd("get", f"s3://{bucket}/small.txt", str(tmp_path / "small.back")))
    ok(c.s3cmd("get", f"s3://{bucket}/big.bin", str(tmp_path / "big.back")))
    assert (tmp_path / "small.back").read_bytes() == small.read_bytes()
    assert (tmp_path / "big.back").read_bytes() == big.read_bytes()
    ok(c.s3cmd("rm", f"s3://{bucket}/small.txt", f"s3://{bucket}/big.bin"))
    assert ok(c.s3cmd("ls", f"s3://{bucket}/")) == ""
    ok(c.s3cmd("rb", f"s3://{bucket}"))
    assert f"s3://{bucket}" not in ok(c.s3cmd("ls"))


def test_another_users_buckets_are_refused(inproc: InProc, user: Any, tmp_path: Path) -> None:
    a, _ = user("a")
    b, c = user("b")
    s3a = s3_for(creds_of(inproc, a))
    s3a.put_object(Bucket=f"{a}-home", Key="secret.txt", Body=b"A's")
    (tmp_path / "x.txt").write_text("B's")
    assert f"{a}-home" not in ok(c.aws("s3", "ls"))
    assert f"{a}-home" not in ok(c.s3cmd("ls"))
    refused(c.aws("s3", "ls", f"s3://{a}-home/"))
    refused(c.aws("s3", "cp", f"s3://{a}-home/secret.txt", str(tmp_path / "stolen")))
    refused(c.aws("s3", "cp", str(tmp_path / "x.txt"), f"s3://{a}-home/secret.txt"))
    refused(c.aws("s3", "rm", f"s3://{a}-home/secret.txt"))
    refused(c.aws("s3", "mb", f"s3://{a}-mine"))
    refused(c.s3cmd("ls", f"s3://{a}-home/"))
    refused(c.s3cmd("get", f"s3://{a}-home/secret.txt", str(tmp_path / "stolen2")))
    refused(c.s3cmd("put", str(tmp_path / "x.txt"), f"s3://{a}-home/secret.txt"))
    refused(c.s3cmd("mb", f"s3://{a}-mine2"))
    assert not (tmp_path / "stolen").exists() and not (tmp_path / "stolen2").exists()
    keys = [o["Key"] for o in s3a.list_objects_v2(Bucket=f"{a}-home")["Contents"]]
    assert keys == ["secret.txt"]
    assert s3a.get_object(Bucket=f"{a}-home", Key="secret.txt")["Body"].read() == b"A's"
    assert {b["Name"] for b in s3a.list_buckets()["Buckets"]} == {f"{a}-home"}


def test_space_grant_lets_awscli_write_and_revoke_stops_it(
    inproc: InProc, user: Any, tmp_path: Path
) -> None:
    owner, _ = user("own")
    grantee, c = user("gr")
    space = f"cli{secrets.token_hex(3)}"
    bucket = f"space-{space}"
    api = inproc.http(owner)  # the owner manages the space with their own token
    assert api.post("/services/lakehub/api/spaces", json={"name": space}).status_code == 201
    grants = f"/services/lakehub/api/spaces/{space}/grants"
    (tmp_path / "w.txt").write_text("written by the grantee")
    refused(c.aws("s3", "cp", str(tmp_path / "w.txt"), f"s3://{bucket}/w.txt"))
    assert api.put(grants, json={"user": grantee, "access": "write"}).status_code == 200
    ok(c.aws("s3", "cp", str(tmp_path / "w.txt"), f"s3://{bucket}/w.txt"))
    s3o = s3_for(creds_of(inproc, owner))
    assert s3o.get_object(Bucket=bucket, Key="w.txt")["Body"].read() == b"written by the grantee"
    assert api.delete(grants, params={"user": grantee}).status_code == 204
    refused(c.aws("s3", "cp", str(tmp_path / "w.txt"), f"s3://{bucket}/w2.txt"))
    refused(c.aws("s3", "rm", f"s3://{bucket}/w.txt"))
    assert [o["Key"] for o in s3o.list_objects_v2(Bucket=bucket)["Contents"]] == ["w.txt"]
