"""`lakehub lake share | unshare` as a space's owner, with the owner's own token.

In-process (tests/inproc.py): the CLI against the in-process API, the real lake judging."""

from __future__ import annotations

import secrets

from conftest import creds_of, s3_for
from inproc import InProc
from test_lake_cli import lake
from test_spaces import NONE, READ, WRITE, can


def test_share_and_unshare_with_users_and_groups(inproc: InProc, inproc_user) -> None:
    owner, writer, member = inproc_user("own"), inproc_user("wr"), inproc_user("gm")
    space, group = f"sh{secrets.token_hex(3)}", f"team{secrets.token_hex(3)}"
    bucket = f"space-{space}"
    with inproc.http(owner) as c:
        assert c.post("/services/lakehub/api/spaces", json={"name": space}).status_code == 201
    inproc.cli("group", "create", group)
    inproc.cli("group", "add", group, member)
    s3_for(creds_of(inproc, owner)).put_object(Bucket=bucket, Key="seed.txt", Body=b"seed")
    s3w, s3m = s3_for(creds_of(inproc, writer)), s3_for(creds_of(inproc, member))
    assert can(s3w, bucket) == NONE and can(s3m, bucket) == NONE
    out = lake(inproc, owner, "share", space, writer, "write")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"{writer} may now write space {space} (s3://{bucket})"
    out = lake(inproc, owner, "share", space, f"@{group}", "read")
    assert out.returncode == 0 and f"@{group} may now read space {space}" in out.stdout
    assert can(s3w, bucket) == WRITE and can(s3m, bucket) == READ
    # the same grants the administrator's `lakehub space list` shows
    listed = inproc.cli("space", "list").stdout
    assert f"user {writer}: write" in listed and f"group {group}: read" in listed
    out = lake(inproc, owner, "unshare", space, writer)
    assert out.returncode == 0
    assert out.stdout.strip() == f"{writer} no longer has access to space {space}"
    assert lake(inproc, owner, "unshare", space, f"@{group}").returncode == 0
    assert can(s3w, bucket) == NONE and can(s3m, bucket) == NONE
    assert (
        s3_for(creds_of(inproc, owner)).get_object(Bucket=bucket, Key="seed.txt")["Body"].read()
        == b"seed"
    )


def test_only_the_owner_shares_and_errors_are_one_line(inproc: InProc, inproc_user) -> None:
    owner, other = inproc_user("own"), inproc_user("oth")
    space = f"sh{secrets.token_hex(3)}"
    with inproc.http(owner) as c:
        assert c.post("/services/lakehub/api/spaces", json={"name": space}).status_code == 201
    s3_for(creds_of(inproc, owner)).put_object(Bucket=f"space-{space}", Key="seed.txt", Body=b"s")
    assert lake(inproc, owner, "share", space, other, "read").returncode == 0
    s3o = s3_for(creds_of(inproc, other))
    cases = [
        # a reader cannot widen its own access, nor take the owner's
        ((other, "share", space, other, "write"), f"only {space}'s owner or an administrator"),
        ((other, "unshare", space, owner), f"only {space}'s owner or an administrator"),
        ((owner, "share", space, "nosuchuser", "read"), "no user named 'nosuchuser'"),
        ((owner, "share", space, "@nosuchgroup", "read"), "no group named 'nosuchgroup'"),
        ((owner, "share", space, other, "admin"), "access must be read or write, not 'admin'"),
        ((owner, "share", space, "@", "read"), "names no user (NAME) or group (@NAME)"),
        ((owner, "share", "../x", other, "read"), "is not a space name"),
        ((owner, "unshare", space, owner), f"no grant on {space} for {owner}"),
        ((inproc_user("str"), "share", space, other, "write"), f"no space named '{space}'"),
    ]
    for (who, *args), message in cases:
        out = lake(inproc, who, *args)
        assert out.returncode == 1, (args, out.stdout)
        assert out.stderr.startswith("error: ") and message in out.stderr, (args, out.stderr)
        assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr
    assert can(s3o, f"space-{space}") == READ  # nothing above changed the grant
