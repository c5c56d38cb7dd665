"""`lakehub lake share | unshare` as a space's owner, with the owner's own token."""

from __future__ import annotations

import secrets

from conftest import Hub, creds_of, s3_for
from test_lake_cli import lake
from test_spaces import NONE, READ, WRITE, can


def test_share_and_unshare_with_users_and_groups(hub: Hub, new_user) -> None:
    owner, writer, member = new_user("own"), new_user("wr"), new_user("gm")
    space, group = f"sh{secrets.token_hex(3)}", f"team{secrets.token_hex(3)}"
    bucket = f"space-{space}"
    with hub.http(owner) as c:
        assert c.post("/services/lakehub/api/spaces", json={"name": space}).status_code == 201
    hub.cli("group", "create", group)
    hub.cli("group", "add", group, member)
    s3_for(creds_of(hub, owner)).put_object(Bucket=bucket, Key="seed.txt", Body=b"seed")
    s3w, s3m = s3_for(creds_of(hub, writer)), s3_for(creds_of(hub, member))
    assert can(s3w, bucket) == NONE and can(s3m, bucket) == NONE
    out = lake(hub, owner, "share", space, writer, "write")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"{writer} may now write space {space} (s3://{bucket})"
    out = lake(hub, owner, "share", space, f"@{group}", "read")
    assert out.returncode == 0 and f"@{group} may now read space {space}" in out.stdout
    assert can(s3w, bucket) == WRITE and can(s3m, bucket) == READ
    # the same grants the administrator's `lakehub space list` shows
    listed = hub.cli("space", "list").stdout
    assert f"user {writer}: write" in listed and f"group {group}: read" in listed
    out = lake(hub, owner, "unshare", space, writer)
    assert out.returncode == 0
    assert out.stdout.strip() == f"{writer} no longer has access to space {space}"
    assert lake(hub, owner, "unshare", space, f"@{group}").returncode == 0
    assert can(s3w, bucket) == NONE and can(s3m, bucket) == NONE
    assert (
        s3_for(creds_of(hub, owner)).get_object(Bucket=bucket, Key="seed.txt")["Body"].read()
        == b"seed"
    )


def test_only_the_owner_shares_and_errors_are_one_line(hub: Hub, new_user) -> None:
    owner, other = new_user("own"), new_user("oth")
    space = f"sh{secrets.token_hex(3)}"
    with hub.http(owner) as c:
        assert c.post("/services/lakehub/api/spaces", json={"name": space}).status_code == 201
    s3_for(creds_of(hub, owner)).put_object(Bucket=f"space-{space}", Key="seed.txt", Body=b"s")
    assert lake(hub, owner, "share", space, other, "read").returncode == 0
    s3o = s3_for(creds_of(hub, other))
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
        ((new_user("str"), "share", space, other, "write"), f"no space named '{space}'"),
    ]
    for (who, *args), message in cases:
        out = lake(hub, who, *args)
        assert out.returncode == 1, (args, out.stdout)
        assert out.stderr.startswith("error: ") and message in out.stderr, (args, out.stderr)
        assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr
    assert can(s3o, f"space-{space}") == READ  # nothing above changed the grant
