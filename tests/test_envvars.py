"""Environment variables for notebook servers: API, SDK, CLI, portal, a real kernel, and secrecy.

API, SDK, CLI and portal run in-process (tests/inproc.py); the kernel test on a real hub."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys

import httpx
import pytest

from conftest import Hub
from inproc import InProc
from kernel import Kernel, start_server, stop_server
from lakehub.client import LakeHubError

API = "/services/lakehub/api/env"
PORTAL = "/services/lakehub/env"


def put(
    hub: Hub | InProc, user: str, name: str, value: object, secret: object = False
) -> httpx.Response:
    with hub.http(user) as c:
        return c.put(f"{API}/{name}", json={"value": value, "secret": secret})


def test_set_list_replace_and_delete_through_the_api_and_sdk(inproc: InProc, inproc_user) -> None:
    a = inproc_user("a")
    hidden = "sk-" + secrets.token_urlsafe(24)
    with inproc.http(a) as c:
        r = c.put(f"{API}/REGION_NAME", json={"value": "eu-north"})
        assert r.status_code == 200, r.text
        assert r.json()["value"] == "eu-north" and r.json()["secret"] is False
        r = c.put(f"{API}/API_KEY", json={"value": hidden, "secret": True})
        assert r.status_code == 200 and hidden not in r.text and r.json()["value"] is None
        listed = c.get(API)
        assert listed.status_code == 200 and listed.headers["cache-control"] == "no-store"
        assert [(x["name"], x["secret"], x["value"]) for x in listed.json()] == [
            ("API_KEY", True, None),
            ("REGION_NAME", False, "eu-north"),
        ]
        assert hidden not in listed.text
        # replacing keeps one row; a secret turned plain needs a new value, so nothing leaks
        assert c.put(f"{API}/REGION_NAME", json={"value": "eu-west"}).status_code == 200
        assert c.put(f"{API}/API_KEY", json={"secret": False}).status_code == 400
        assert {x["name"]: x["value"] for x in c.get(API).json()}["REGION_NAME"] == "eu-west"
        assert c.delete(f"{API}/REGION_NAME").status_code == 204
        r = c.delete(f"{API}/REGION_NAME")
        assert r.status_code == 404 and r.json()["detail"] == "no variable named 'REGION_NAME'"
        assert [x["name"] for x in c.get(API).json()] == ["API_KEY"]
    import lakehub

    with lakehub.connect(inproc.url, inproc.token(a)) as client:
        client.env.set("MODE", "fast")
        client.env.set("TOKEN2", "t-" + hidden, secret=True)
        got = {x["name"]: x["value"] for x in client.env.list()}
        assert got == {"API_KEY": None, "MODE": "fast", "TOKEN2": None}
        client.env.delete("MODE")
        with pytest.raises(LakeHubError) as refused:
            client.env.set("PATH", "/tmp")
        assert refused.value.status == 400 and "set by LakeHub itself" in refused.value.detail
    # the audit trail names the variables, never their values
    with inproc.http("admin") as c:
        events = c.get("/services/lakehub/api/events").json()
    mine = {(e["action"], e["target"]) for e in events if e["target"].startswith(f"{a}/")}
    assert {
        ("env.set", f"{a}/API_KEY"),
        ("env.delete", f"{a}/REGION_NAME"),
        ("env.set", f"{a}/TOKEN2"),
    } <= mine
    assert all(hidden not in json.dumps(e) for e in events)


def test_bad_names_reserved_names_and_oversized_values_are_clear_400s(
    inproc: InProc, inproc_user
) -> None:
    a = inproc_user("a")
    hidden = "sv-" + secrets.token_urlsafe(16)
    cases = {
        "1ABC": "invalid variable name '1ABC'",
        "A-B": "invalid variable name",
        "X" * 129: "at most 128 characters",
        "AWS_SECRET_ACCESS_KEY": "set by LakeHub itself",
        "LAKEHUB_API_URL": "set by LakeHub itself",
        "JUPYTERHUB_API_TOKEN": "set by LakeHub itself",
        "S3_ENDPOINT_URL": "set by LakeHub itself",
        "ld_preload": "set by LakeHub itself",
        "PYTHONPATH": "set by LakeHub itself",
        "HOME": "set by LakeHub itself",
    }
    for name, message in cases.items():
        r = put(inproc, a, name, hidden, True)
        assert r.status_code == 400, (name, r.text)
        assert message in r.json()["detail"] and hidden not in r.text, (name, r.text)
    r = put(inproc, a, "BIG", "x" * (32 * 1024 + 1), True)
    assert r.status_code == 400 and r.json()["detail"] == "the value of BIG is longer than 32 KiB"
    assert len(r.text) < 200
    assert put(inproc, a, "FITS", "x" * (32 * 1024)).status_code == 200
    for body, message in (
        ({"secret": True}, "missing or not a string"),
        ({"value": 12, "secret": True}, "missing or not a string"),
        ({"value": hidden, "secret": "yes"}, "secret must be true or false"),
        ({"value": "a\x00b"}, "NUL character"),
    ):
        with inproc.http(a) as c:
            r = c.put(f"{API}/OK_NAME", json=body)
        assert r.status_code == 400 and message in r.json()["detail"], r.text
        assert hidden not in r.text
    with inproc.http(a) as c:
        assert [x["name"] for x in c.get(API).json()] == ["FITS"]  # nothing refused was kept
        for i in range(7):  # 8 x 32 KiB: the most one user's values may hold in all
            assert c.put(f"{API}/FITS{i}", json={"value": "y" * 32 * 1024}).status_code == 200
        r = c.put(f"{API}/ONE_MORE", json={"value": "z"})
        assert r.status_code == 400 and "would exceed 256 KiB in all" in r.json()["detail"]
        assert c.put(f"{API}/FITS0", json={"value": "shorter"}).status_code == 200  # replacing
    with inproc.admin_http() as c:  # the local administrator has no server to give them to
        r = c.get("/env")
        assert r.status_code == 400 and "local administrator" in r.json()["detail"]


def test_other_users_and_admins_cannot_list_read_or_delete(inproc: InProc, inproc_user) -> None:
    a, b, boss = inproc_user("a"), inproc_user("b"), inproc_user("boss", admin=True)
    hidden = "own-" + secrets.token_urlsafe(16)
    assert put(inproc, a, "SHARED_NAME", hidden, True).status_code == 200
    assert put(inproc, b, "SHARED_NAME", "b's own").status_code == 200  # names are per user
    for other in (b, boss):
        with inproc.http(other) as c:
            listed = c.get(API)
            assert hidden not in listed.text
            assert all(x["value"] != hidden for x in listed.json())
            r = c.delete(f"{API}/NOT_HERE")
            assert r.status_code == 404
            for path in (f"/services/lakehub/api/users/{a}/env", f"{API}/{a}/SHARED_NAME"):
                r = c.get(path)
                assert r.status_code in (404, 405) and hidden not in r.text, (path, r.text)
    with inproc.http(boss) as c:
        assert c.delete(f"{API}/SHARED_NAME").status_code == 404  # the admin has none
    with inproc.http(a) as c:
        assert [(x["name"], x["value"]) for x in c.get(API).json()] == [("SHARED_NAME", None)]
    with inproc.http(b) as c:
        assert c.get(API).json()[0]["value"] == "b's own"


def cli(
    hub: Hub | InProc, user: str, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "LAKEHUB_"))}
    env |= {"LAKEHUB_API_URL": hub.url, "LAKEHUB_TOKEN": hub.token(user)}
    return subprocess.run(
        [sys.executable, "-m", "lakehub.cli", "env", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        input=stdin if stdin is not None else "",
    )


def test_cli_set_ls_rm(inproc: InProc, inproc_user) -> None:
    a, b = inproc_user("a"), inproc_user("b")
    hidden = "cli-" + secrets.token_urlsafe(16)
    out = cli(inproc, a, "set", "PLAIN", "--value", "hello world")
    assert out.returncode == 0 and out.stdout == "set PLAIN\n", out.stderr
    out = cli(inproc, a, "set", "HIDDEN", "--secret", stdin=hidden + "\n")
    assert out.returncode == 0 and out.stdout == "set HIDDEN (secret)\n", out.stderr
    assert hidden not in out.stdout + out.stderr
    out = cli(inproc, a, "set", "OTHER", "--secret", "--value", hidden)
    assert out.returncode == 1 and out.stdout == "" and out.stderr.count("\n") == 1
    assert out.stderr.startswith("error: a secret value is never an argument")
    out = cli(inproc, a, "ls")
    assert out.returncode == 0 and out.stdout == "HIDDEN=(secret)\nPLAIN=hello world\n"
    out = cli(inproc, a, "set", "AWS_PROFILE", "--value", "x")
    assert out.returncode == 1 and out.stderr == (
        "error: AWS_PROFILE is set by LakeHub itself and cannot be changed\n"
    )
    out = cli(inproc, b, "rm", "HIDDEN")
    assert out.returncode == 1 and out.stderr == "error: no variable named 'HIDDEN'\n"
    assert cli(inproc, a, "rm", "PLAIN").stdout == "removed PLAIN\n"
    with inproc.http(a) as c:  # what the CLI read from stdin is exactly what was typed
        assert [x["name"] for x in c.get(API).json()] == ["HIDDEN"]
    assert cli(inproc, a, "ls").stdout == "HIDDEN=(secret)\n"


def test_portal_lists_masks_adds_and_deletes(inproc: InProc, inproc_user) -> None:
    a = inproc_user("a")
    hidden = "web-" + secrets.token_urlsafe(16)
    c = inproc.browser_login(a)
    page = c.get(PORTAL)
    assert page.status_code == 200 and 'id="none"' in page.text
    assert f'<a href="{PORTAL}">Variables</a>' in page.text  # the nav link
    r = c.post(PORTAL, data={"name": "PATH", "value": hidden, "secret": "1"})
    assert r.status_code == 400 and "set by LakeHub itself" in r.text and hidden not in r.text
    assert 'value="PATH"' in r.text  # the name is kept, the value never sent back
    r = c.post(
        PORTAL,
        data={"name": "DB_PASSWORD", "value": hidden, "secret": "1"},
        headers={"Origin": "http://evil.example"},
    )
    assert r.status_code == 403
    r = c.post(PORTAL, data={"name": "DB_PASSWORD", "value": hidden, "secret": "1"})
    assert r.status_code == 200 and "Variable DB_PASSWORD saved." in r.text
    r = c.post(PORTAL, data={"name": "COLOR", "value": "teal"})
    assert 'data-variable="DB_PASSWORD"' in r.text and "secret (set)" in r.text
    assert "<code>teal</code>" in r.text and hidden not in r.text
    r = c.post(f"{PORTAL}/COLOR/delete")
    assert "Variable COLOR deleted." in r.text and 'data-variable="COLOR"' not in r.text
    b = inproc.browser_login(inproc_user("b"))
    r = b.post(f"{PORTAL}/DB_PASSWORD/delete")
    assert "no variable named" in r.text and 'data-variable="DB_PASSWORD"' not in r.text
    assert hidden not in c.get(PORTAL).text


def test_a_secret_reaches_the_kernel_and_appears_in_clear_nowhere(hub: Hub, new_user) -> None:
    a = new_user("nb")
    hidden = "kernel-" + secrets.token_urlsafe(24)
    assert put(hub, a, "MY_SECRET", hidden, True).status_code == 200
    assert put(hub, a, "MY_SETTING", "on").status_code == 200
    start_server(hub.url, a, hub.token(a))
    k = Kernel(hub.url, a, hub.token(a))
    try:
        out, err = k.run(
            "import os, hashlib\n"
            "print(hashlib.sha256(os.environ['MY_SECRET'].encode()).hexdigest())\n"
            "print(os.environ['MY_SETTING'], os.environ['LAKEHUB_BUCKET'])\n"
        )
    finally:
        k.close()
        stop_server(hub.url, a, hub.token(a))
    assert err is None, err
    import hashlib

    assert out.split() == [hashlib.sha256(hidden.encode()).hexdigest(), "on", f"{a}-home"]
    needle = hidden.encode()
    with hub.http(a) as c:
        assert hidden not in c.get(API).text
    portal = hub.browser_login(a).get(PORTAL)
    assert portal.status_code == 200 and "MY_SECRET" in portal.text and hidden not in portal.text
    db = sorted((hub.data_dir / "state").glob("lakehub.sqlite*"))
    assert db and all(needle not in p.read_bytes() for p in db), db
    found = [
        p for p in (hub.data_dir / "logs").rglob("*") if p.is_file() and needle in p.read_bytes()
    ]
    assert found == []
