"""Shared spaces: grants enforced by the lake itself, before and after grant and revoke.

In-process (tests/inproc.py): the API over a real lake, no hub; what the CLI did here is the
same API call, made as the local administrator."""

from __future__ import annotations

import secrets
import subprocess
from typing import Any

import pytest
from botocore.exceptions import ClientError

from conftest import LAKEHUB, s3_for
from inproc import API_PREFIX, InProc


def can(s3: Any, bucket: str) -> dict[str, bool]:
    """What these keys may do on ``bucket``, tried for real: list, get, put, delete."""
    out = {}
    probes = {
        "list": lambda: s3.list_objects_v2(Bucket=bucket),
        "get": lambda: s3.get_object(Bucket=bucket, Key="seed.txt")["Body"].read(),
        "put": lambda: s3.put_object(Bucket=bucket, Key=f"w-{secrets.token_hex(3)}", Body=b"x"),
        "delete": lambda: s3.delete_object(Bucket=bucket, Key="does-not-matter"),
    }
    for action, call in probes.items():
        try:
            call()
            out[action] = True
        except ClientError as err:
            assert err.response["Error"]["Code"] in ("AccessDenied", "403"), err.response
            out[action] = False
    return out


NONE = {"list": False, "get": False, "put": False, "delete": False}
READ = {"list": True, "get": True, "put": False, "delete": False}
WRITE = {"list": True, "get": True, "put": True, "delete": True}


def creds_of(ip: InProc, name: str) -> dict[str, str]:
    with ip.http(name) as c:
        r = c.get(f"{API_PREFIX}/lake/credentials")
        assert r.status_code == 200, r.text
        return r.json()


def admin(ip: InProc, method: str, path: str, **kw: Any) -> None:
    """What ``lakehub space|group ...`` does: one API call as the local administrator."""
    with ip.admin_http() as c:
        r = c.request(method, path, **kw)
    assert r.status_code in (200, 201, 204), r.text


def grant(ip: InProc, space: str, access: str, **who: str) -> None:
    admin(ip, "PUT", f"/spaces/{space}/grants", json={**who, "access": access})


@pytest.fixture
def team(inproc: InProc, inproc_user):
    owner, reader, writer, grouped, outsider = (
        inproc_user(p) for p in ("own", "rd", "wr", "gp", "out")
    )
    space = f"proj{secrets.token_hex(3)}"
    group = f"grp{secrets.token_hex(3)}"
    admin(inproc, "POST", "/spaces", json={"name": space, "owner": owner})
    admin(inproc, "POST", "/groups", json={"name": group})
    admin(inproc, "PUT", f"/groups/{group}/members/{grouped}")
    s3 = {n: s3_for(creds_of(inproc, n)) for n in (owner, reader, writer, grouped, outsider)}
    s3[owner].put_object(Bucket=f"space-{space}", Key="seed.txt", Body=b"seed")
    return {
        "space": space,
        "bucket": f"space-{space}",
        "group": group,
        "s3": s3,
        "owner": owner,
        "reader": reader,
        "writer": writer,
        "grouped": grouped,
        "outsider": outsider,
    }


def test_grant_matrix_before_grant_after_grant_after_revoke(inproc: InProc, team) -> None:
    bucket, s3, space = team["bucket"], team["s3"], team["space"]
    others = ("reader", "writer", "grouped", "outsider")
    # before any grant: only the owner
    assert can(s3[team["owner"]], bucket) == WRITE
    for who in others:
        assert can(s3[team[who]], bucket) == NONE, who
    # grants take effect when the command returns
    grant(inproc, space, "read", user=team["reader"])
    grant(inproc, space, "write", user=team["writer"])
    grant(inproc, space, "read", group=team["group"])
    expected = {"reader": READ, "writer": WRITE, "grouped": READ, "outsider": NONE}
    for who, rights in expected.items():
        assert can(s3[team[who]], bucket) == rights, who
    # nobody but the owner got rights on the bucket itself
    with pytest.raises(ClientError):
        s3[team["writer"]].delete_bucket(Bucket=bucket)
    # a group grant follows membership
    admin(inproc, "DELETE", f"/groups/{team['group']}/members/{team['grouped']}")
    assert can(s3[team["grouped"]], bucket) == NONE
    admin(inproc, "PUT", f"/groups/{team['group']}/members/{team['grouped']}")
    assert can(s3[team["grouped"]], bucket) == READ
    # revokes take effect when the command returns, and revoke cleanly
    admin(inproc, "DELETE", f"/spaces/{space}/grants", params={"user": team["writer"]})
    admin(inproc, "DELETE", f"/spaces/{space}/grants", params={"group": team["group"]})
    grant(inproc, space, "write", user=team["reader"])
    expected = {"reader": WRITE, "writer": NONE, "grouped": NONE, "outsider": NONE}
    for who, rights in expected.items():
        assert can(s3[team[who]], bucket) == rights, who
    # the seed is intact, and every change was recorded
    assert s3[team["owner"]].get_object(Bucket=bucket, Key="seed.txt")["Body"].read() == b"seed"
    with inproc.admin_http() as c:
        events = c.get("/events?limit=200").json()
    mine = [(e["action"], e["detail"]) for e in events if e["target"] == space]
    assert ("space.grant", f"read to user {team['reader']}") in mine
    assert ("space.revoke", f"from user {team['writer']}") in mine
    assert ("space.revoke", f"from group {team['group']}") in mine


def test_only_owner_or_admin_manage_a_space(inproc: InProc, team) -> None:
    space = team["space"]
    grant(inproc, space, "read", user=team["reader"])
    with inproc.http(team["reader"]) as c:  # a grantee sees the space but may not manage it
        r = c.put(
            f"/services/lakehub/api/spaces/{space}/grants",
            json={"user": team["outsider"], "access": "write"},
        )
        assert r.status_code == 403 and "owner or an administrator" in r.json()["detail"]
        assert c.delete(f"/services/lakehub/api/spaces/{space}").status_code == 403
    with inproc.http(team["outsider"]) as c:  # a space one has no access to is invisible
        assert c.get(f"/services/lakehub/api/spaces/{space}").status_code == 404
        assert all(sp["name"] != space for sp in c.get("/services/lakehub/api/spaces").json())
        r = c.put(
            f"/services/lakehub/api/spaces/{space}/grants",
            json={"user": team["outsider"], "access": "write"},
        )
        assert r.status_code == 404 and r.json()["detail"] == f"no space named {space!r}"
        assert c.delete(f"/services/lakehub/api/spaces/{space}").status_code == 404
    assert can(team["s3"][team["outsider"]], team["bucket"]) == NONE
    with inproc.http(team["owner"]) as c:
        r = c.put(
            f"/services/lakehub/api/spaces/{space}/grants",
            json={"user": team["outsider"], "access": "read"},
        )
        assert r.status_code == 200, r.text
        assert {"kind": "user", "name": team["outsider"], "access": "read"} in r.json()["grants"]
        bad = c.put(
            f"/services/lakehub/api/spaces/{space}/grants",
            json={"user": team["outsider"], "access": "admin"},
        )
        assert bad.status_code == 422
        both = c.put(
            f"/services/lakehub/api/spaces/{space}/grants",
            json={"user": team["outsider"], "group": team["group"], "access": "read"},
        )
        assert both.status_code == 400
    assert can(team["s3"][team["outsider"]], team["bucket"]) == READ
    with inproc.http(team["outsider"]) as c:
        listed = {sp["name"]: sp["access"] for sp in c.get("/services/lakehub/api/spaces").json()}
        assert listed[space] == "read"


def test_users_create_their_own_spaces_and_bad_names_are_refused(
    inproc: InProc, inproc_user
) -> None:
    name = inproc_user()
    space = f"mine{secrets.token_hex(3)}"
    with inproc.http(name) as c:
        r = c.post("/services/lakehub/api/spaces", json={"name": space})
        assert r.status_code == 201, r.text
        assert r.json()["owner"] == name and r.json()["access"] == "owner"
        assert c.post("/services/lakehub/api/spaces", json={"name": space}).status_code == 409
        for bad in ("../etc", "UPPER", "a", "space-x"):
            r = c.post("/services/lakehub/api/spaces", json={"name": bad})
            assert r.status_code == 400, bad
        r = c.post("/services/lakehub/api/spaces", json={"name": "forother", "owner": "admin"})
        assert r.status_code == 403
    s3 = s3_for(creds_of(inproc, name))
    s3.put_object(Bucket=f"space-{space}", Key="a.txt", Body=b"a")
    # its owner cannot be deleted while the space is theirs
    with inproc.admin_http() as c:
        r = c.delete(f"/users/{name}")
    assert r.status_code == 409 and "owns the spaces" in r.json()["detail"], r.text
    # the command line refuses a grant to nobody before it reaches any hub
    argv = [*LAKEHUB, "space", "grant", space, "--access", "read", "--data-dir", "/nonexistent"]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "exactly one of --user or --group" in out.stderr


def test_portal_lists_the_spaces_one_can_use(inproc: InProc, team) -> None:
    grant(inproc, team["space"], "read", user=team["reader"])
    # the portal with a user's token (a browser's cookie carries the same token)
    with inproc.http(team["reader"]) as c:
        page = c.get("/services/lakehub/").text
    assert f'data-space="{team["space"]}"' in page and team["bucket"] in page
    with inproc.http(team["outsider"]) as c:
        page = c.get("/services/lakehub/").text
    assert team["space"] not in page
