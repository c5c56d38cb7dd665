"""Quotas per user and per space, enforced by the lake on the users' own keys.

In-process (tests/inproc.py): the quota loop and a real lake, the CLI against the in-process API."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from conftest import creds_of, s3_for
from inproc import InProc

API = "/services/lakehub/api"
KiB, MiB = 1024, 1024 * 1024


def set_quota(inproc: InProc, kind: str, name: str, **limits: int) -> dict[str, Any]:
    with inproc.http("admin") as c:
        r = c.put(f"{API}/quotas/{kind}/{name}", json=limits)
        assert r.status_code == 200, r.text
        return r.json()


def quota_of(inproc: InProc, kind: str, name: str, viewer: str = "admin") -> dict[str, Any] | None:
    with inproc.http(viewer) as c:
        r = c.get(f"{API}/quotas")
        assert r.status_code == 200, r.text
    return next((q for q in r.json() if (q["kind"], q["name"]) == (kind, name)), None)


def wait_blocked(inproc: InProc, kind: str, name: str, blocked: bool) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        q = quota_of(inproc, kind, name)
        return q if q and q["blocked"] == blocked else None

    state = "blocked" if blocked else "unblocked"
    result: dict[str, Any] = inproc.wait(check, timeout=30, what=f"{kind} {name} {state}")
    return result


def refused(call: Any) -> str:
    """The lake's error code for a write it refused (fails the test if it was accepted)."""
    with pytest.raises(ClientError) as err:
        call()
    return str(err.value.response["Error"]["Code"])


def lake(inproc: InProc, name: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "LAKEHUB_"))}
    env |= {"LAKEHUB_API_URL": inproc.url, "LAKEHUB_TOKEN": inproc.token(name)}
    return subprocess.run(
        [sys.executable, "-m", "lakehub.cli", "lake", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


@pytest.fixture(scope="module")
def bystander(inproc: InProc) -> str:
    """A user with no quota, who tries to see and change those of others."""
    name = f"by{secrets.token_hex(3)}"
    inproc.quick_user(name)
    return name


def test_user_quota_counts_all_own_buckets_blocks_and_delete_reopens(
    inproc: InProc, inproc_user, bystander: str
) -> None:
    name = inproc_user("q")
    s3 = s3_for(creds_of(inproc, name))
    home, data = f"{name}-home", f"{name}-data"
    s3.create_bucket(Bucket=data)
    out = inproc.cli("quota", "set", "user", name, "--bytes", "1MiB")
    assert f"quota set on user {name}: 0 B of 1.0 MiB used" in out.stdout
    first = os.urandom(400 * KiB)
    s3.put_object(Bucket=home, Key="a.bin", Body=first)
    s3.put_object(Bucket=data, Key="b.bin", Body=os.urandom(400 * KiB))
    s3.put_object(Bucket=data, Key="c.bin", Body=os.urandom(400 * KiB))  # over: 1.2 MiB
    q = wait_blocked(inproc, "user", name, True)
    assert q["used_bytes"] == 1200 * KiB and q["used_objects"] == 3
    assert q["message"] == (
        f"quota exceeded for user {name}: 1.2 MiB of 1.0 MiB used; delete something or ask an admin"
    )
    # every write is refused, in every bucket of the user's, new buckets included
    assert refused(lambda: s3.put_object(Bucket=home, Key="d.bin", Body=b"d")) == "InternalError"
    assert refused(lambda: s3.put_object(Bucket=data, Key="d.bin", Body=b"d")) == "InternalError"
    assert refused(lambda: s3.create_bucket(Bucket=f"{name}-more")) == "InternalError"
    refused(lambda: s3.put_object(Bucket=home, Key="a.bin", Body=b"overwrite"))
    # nothing stored is damaged, and another user is not affected
    assert s3.get_object(Bucket=home, Key="a.bin")["Body"].read() == first
    s3_for(creds_of(inproc, bystander)).put_object(Bucket=f"{bystander}-home", Key="x", Body=b"x")
    # the owner sees it on the portal, the admin on the admin page
    page = inproc.browser_login(name).get("/services/lakehub/").text
    assert f'data-quota="user-{name}"' in page and "1.2 MiB of 1.0 MiB" in page
    assert "writes refused" in page
    page = inproc.browser_login("admin").get("/services/lakehub/admin").text
    assert f'data-quota="user-{name}"' in page
    page = inproc.browser_login(bystander).get("/services/lakehub/").text
    assert "Welcome" in page and name not in page and 'id="quota"' not in page
    # deleting brings usage under the limit and writes work again
    s3.delete_object(Bucket=data, Key="c.bin")
    q = wait_blocked(inproc, "user", name, False)
    assert q["used_bytes"] == 800 * KiB and q["message"] == ""
    s3.put_object(Bucket=home, Key="d.bin", Body=b"d")
    events = inproc.http("admin").get(f"{API}/events?limit=300").json()
    mine = [(e["action"], e["actor"]) for e in events if e["target"] == f"user {name}"]
    assert ("quota.set", "local-admin") in mine
    assert ("quota.block", "lakehub") in mine and ("quota.unblock", "lakehub") in mine


def test_multipart_upload_crossing_the_limit_fails_cleanly(
    inproc: InProc, inproc_user, tmp_path: Path
) -> None:
    name = inproc_user("mp")
    s3 = s3_for(creds_of(inproc, name))
    kept = os.urandom(MiB)
    s3.put_object(Bucket=f"{name}-home", Key="kept.bin", Body=kept)
    set_quota(inproc, "user", name, max_bytes=10 * MiB)
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(48 * MiB))  # six 8 MiB parts, sent one at a time at 8 MiB/s
    out = lake(inproc, name, "cp", "--max-bandwidth", "8MiB", str(big), f"s3://{name}-home/")
    assert out.returncode == 1, out.stdout
    errors = [line for line in out.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and "Traceback" not in out.stderr, out.stderr
    line = errors[0][errors[0].index("error:") :]  # after the progress bar's label, if any
    assert line.startswith(f"error: quota exceeded for user {name}: "), line
    assert " of 10.0 MiB used" in line and line.endswith("; delete something or ask an admin")
    # the upload was aborted, and what was there is intact
    assert s3.list_multipart_uploads(Bucket=f"{name}-home").get("Uploads", []) == []
    assert refused(lambda: s3.head_object(Bucket=f"{name}-home", Key="big.bin")) == "404"
    assert s3.get_object(Bucket=f"{name}-home", Key="kept.bin")["Body"].read() == kept
    # removing the quota lifts the block when the command returns
    out = inproc.cli("quota", "rm", "user", name)
    assert out.stdout.strip() == f"removed the quota on user {name}"
    assert quota_of(inproc, "user", name) is None
    s3.put_object(Bucket=f"{name}-home", Key="after.bin", Body=b"after")


def test_objects_quota(inproc: InProc, inproc_user) -> None:
    name = inproc_user("ob")
    s3 = s3_for(creds_of(inproc, name))
    inproc.cli("quota", "set", "user", name, "--objects", "3")
    for i in range(3):
        s3.put_object(Bucket=f"{name}-home", Key=f"o{i}", Body=b"o")
    q = wait_blocked(inproc, "user", name, True)
    assert q["message"].endswith(": 3 of 3 objects; delete something or ask an admin")
    assert refused(lambda: s3.put_object(Bucket=f"{name}-home", Key="o3", Body=b"o"))
    s3.delete_object(Bucket=f"{name}-home", Key="o0")
    wait_blocked(inproc, "user", name, False)
    s3.put_object(Bucket=f"{name}-home", Key="o3", Body=b"o")


def test_space_quota_applies_to_a_grantee(
    inproc: InProc, inproc_user, bystander: str, tmp_path: Path
) -> None:
    owner, writer, outsider = inproc_user("so"), inproc_user("sw"), bystander
    space = f"quo{secrets.token_hex(3)}"
    bucket = f"space-{space}"
    with inproc.http(owner) as c:
        assert c.post(f"{API}/spaces", json={"name": space}).status_code == 201
        r = c.put(f"{API}/spaces/{space}/grants", json={"user": writer, "access": "write"})
        assert r.status_code == 200, r.text
    set_quota(inproc, "space", space, max_bytes=512 * KiB)
    s3 = s3_for(creds_of(inproc, writer))
    s3.put_object(Bucket=bucket, Key="big.bin", Body=os.urandom(600 * KiB))
    wait_blocked(inproc, "space", space, True)
    assert refused(lambda: s3.put_object(Bucket=bucket, Key="more", Body=b"m"))
    owner_s3 = s3_for(creds_of(inproc, owner))
    assert refused(lambda: owner_s3.put_object(Bucket=bucket, Key="more", Body=b"m"))
    s3.put_object(Bucket=f"{writer}-home", Key="mine", Body=b"own buckets are not the space")
    (tmp_path / "f.txt").write_text("f")
    out = lake(inproc, writer, "cp", str(tmp_path / "f.txt"), f"s3://{bucket}/f.txt")
    assert out.returncode == 1
    assert out.stderr.strip() == (
        f"error: quota exceeded for space {space}: 600.0 KiB of 512.0 KiB used; "
        "delete something or ask an admin"
    )
    # grantees and owners see the space's quota; others do not
    assert quota_of(inproc, "space", space, viewer=writer) is not None
    assert quota_of(inproc, "space", space, viewer=owner) is not None
    assert quota_of(inproc, "space", space, viewer=outsider) is None
    s3.delete_object(Bucket=bucket, Key="big.bin")
    wait_blocked(inproc, "space", space, False)
    s3.put_object(Bucket=bucket, Key="more", Body=b"m")


def test_only_admins_set_quotas_and_bad_input_is_explained(
    inproc: InProc, inproc_user, bystander: str
) -> None:
    alice, bob = inproc_user("qa"), bystander
    set_quota(inproc, "user", alice, max_bytes=10 * MiB, max_objects=100)
    with inproc.http(bob) as c:
        r = c.put(f"{API}/quotas/user/{bob}", json={"max_bytes": 10**12})
        assert r.status_code == 403 and r.json()["detail"] == "administrators only"
        assert c.delete(f"{API}/quotas/user/{alice}").status_code == 403
        assert all(q["name"] != alice for q in c.get(f"{API}/quotas").json())
    mine = quota_of(inproc, "user", alice, viewer=alice)
    assert mine is not None and mine["max_objects"] == 100
    bad = [
        (
            "user",
            alice,
            {"max_bytes": -1},
            400,
            f"max_bytes must be a number from 0 to {2**63 - 1}, not -1",
        ),
        (
            "user",
            alice,
            {"max_objects": 2**64},
            400,
            f"max_objects must be a number from 0 to {2**63 - 1}, not {2**64}",
        ),
        ("user", alice, {}, 400, "give max_bytes, max_objects or both"),
        ("user", "nosuchuser", {"max_bytes": 1}, 404, "no user named 'nosuchuser'"),
        ("space", "nosuchspace", {"max_bytes": 1}, 404, "no space named 'nosuchspace'"),
        ("group", alice, {"max_bytes": 1}, 400, "kind must be one of user, space, not 'group'"),
    ]
    with inproc.http("admin") as c:
        for kind, name, body, status, message in bad:
            r = c.put(f"{API}/quotas/{kind}/{name}", json=body)
            assert (r.status_code, r.json()["detail"]) == (status, message), (kind, body)
        r = c.put(f"{API}/quotas/user/{alice}", json={"max_bytes": "lots"})
        assert r.status_code == 422
        r = c.delete(f"{API}/quotas/user/{bob}")
        assert (r.status_code, r.json()["detail"]) == (404, f"no quota on user {bob}")
    # the limits did not change
    assert quota_of(inproc, "user", alice)["max_bytes"] == 10 * MiB  # type: ignore[index]
    cases = [
        (
            ("quota", "set", "user", "nosuchuser", "--bytes", "1MiB"),
            1,
            "error: no user named 'nosuchuser'",
        ),
        (
            ("quota", "set", "user", alice, "--bytes", "10XB"),
            2,
            "error: invalid size '10XB': use a number with an optional unit like 10MiB",
        ),
        (
            ("quota", "set", "bucket", alice, "--bytes", "1"),
            1,
            "error: kind must be one of user, space, not 'bucket'",
        ),
    ]
    for args, code, message in cases:
        out = inproc.cli(*args, check=False)
        assert (out.returncode, out.stderr.strip()) == (code, message), args
    listing = inproc.cli("quota", "ls").stdout
    assert f"user   {alice}" in listing and "0 B of 10.0 MiB used, 0 of 100 objects" in listing
