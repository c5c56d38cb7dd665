"""Administrators manage users but cannot become them, and sign-ups are rate limited.

Each probe is what an administrator of the session hub could try against another user: a
token for them, their server, their password, their secrets. The sign-up limit runs in-process
(tests/inproc.py): clients bound to their own loopback addresses, straight to the app.
"""

from __future__ import annotations

import secrets

import httpx

from conftest import Hub
from inproc import InProc
from kernel import start_server
from test_identity import login_post


def test_admin_cannot_mint_open_start_or_share_for_another_user(hub: Hub, new_user) -> None:
    a = new_user("victim")
    with hub.http("admin") as c:
        me = c.get("/hub/api/user").json()
        assert me["admin"] is False and "lakehub-admin" in me["roles"]
        # a token for A would be A: every secret of A's through LakeHub's API
        r = c.post(f"/hub/api/users/{a}/tokens", json={"note": "break-in"})
        assert r.status_code == 403, r.text
        assert c.post(f"/services/lakehub/api/users/{a}/tokens", json={}).status_code == 403
        # starting A's server picks what it runs; LakeHub starts servers, after its quota check
        r = c.post(f"/hub/api/users/{a}/server")
        assert r.status_code == 404 and "No access" in r.text, r.text  # JupyterHub's refusal
        # reading A's auth state
        assert "auth_state" not in c.get(f"/hub/api/users/{a}").json()
    start_server(hub.url, a, hub.token(a))
    try:
        with hub.http("admin") as c:
            # A's running server: its files, its kernels, its environment (A's secret variables)
            for path in ("api/status", "api/contents", "api/kernels"):
                r = c.get(f"/user/{a}/{path}", follow_redirects=False)
                assert r.status_code == 403, (path, r.status_code, r.text[:200])
            # a share of A's server with the admin would open it just the same
            r = c.post(f"/hub/api/shares/{a}/", json={"user": "admin"})
            assert r.status_code == 403 and "requires any of [shares]" in r.text, r.text
            # what admins keep: see A's server, and stop it
            assert c.get(f"/hub/api/users/{a}").json()["servers"].get("") is not None
            assert c.delete(f"/hub/api/users/{a}/server").status_code in (202, 204)
    finally:
        with hub.http(a) as c:
            c.delete(f"/hub/api/users/{a}/server")


def test_admin_cannot_set_another_users_password(hub: Hub, new_user) -> None:
    a, boss = new_user("victim"), new_user("boss", admin=True)
    with hub.http(boss) as c:
        r = c.patch(f"/services/lakehub/api/users/{a}", json={"password": "known-to-boss"})
        assert r.status_code == 403 and "your own password" in r.json()["detail"]
        r = c.patch(f"/services/lakehub/api/users/{boss}", json={"password": "boss-new-pass"})
        assert r.status_code == 200, r.text
    assert login_post(hub, a, "known-to-boss").status_code == 403
    assert login_post(hub, boss, "boss-new-pass").status_code == 200
    # the hub's operator resets a forgotten password; it is in the audit trail
    out = hub.cli("user", "password", a).stdout
    password = out.split("password: ", 1)[1].split()[0]
    assert login_post(hub, a, password).status_code == 200
    events = hub.http("admin").get("/services/lakehub/api/events").json()
    assert ("local-admin", "user.password", a) in [
        (e["actor"], e["action"], e["target"]) for e in events
    ]
    missing = hub.cli("user", "password", "ghost", check=False)
    assert missing.returncode == 1 and "no user named 'ghost'" in missing.stderr


def test_admin_still_manages_users(hub: Hub, new_user) -> None:
    boss = new_user("boss", admin=True)
    name = f"hire{secrets.token_hex(3)}"
    with hub.http(boss) as c:
        api = "/services/lakehub/api"
        r = c.post(f"{api}/users", json={"name": name})
        assert r.status_code == 201 and r.json()["password"], r.text
        assert c.patch(f"{api}/users/{name}", json={"admin": True}).status_code == 200
        model = c.get(f"/hub/api/users/{name}").json()  # an administrator, not JupyterHub's
        assert model["admin"] is False and model["groups"] == ["lakehub-admins"]
        assert c.patch(f"{api}/users/{name}", json={"admin": False}).status_code == 200
        assert c.get(f"/hub/api/users/{name}").json()["groups"] == []
        assert c.delete(f"{api}/users/{name}").status_code == 204
        assert c.get(f"/hub/api/users/{name}").status_code == 404
        assert c.get("/hub/api/users").status_code == 200  # the hub's user list stays readable


def _from(inproc: InProc, address: str) -> httpx.Client:
    """A client whose connections come from ``address`` (a loopback address of its own)."""
    return httpx.Client(
        base_url=inproc.url, timeout=60, transport=httpx.HTTPTransport(local_address=address)
    )


def test_signup_burst_from_one_address_is_refused(inproc: InProc) -> None:
    names = [f"burst{secrets.token_hex(3)}" for _ in range(8)]
    with _from(inproc, "127.0.0.2") as c:
        codes = [
            c.post("/services/lakehub/api/signup", json={"name": n, "password": "burst-password"})
            for n in names
        ]
        assert [r.status_code for r in codes] == [201] * 5 + [429] * 3
        assert "too many sign-up requests from your address (5 a minute)" in codes[-1].text
        # the form says so too, and keeps what was typed (but the password)
        c.get("/services/lakehub/signup")
        form = {"name": "formname", "password": "x" * 9, "confirm": "x" * 9}
        r = c.post("/services/lakehub/signup", data=form)
        assert r.status_code == 429 and "try again in" in r.text and 'value="formname"' in r.text
    listed = inproc.cli("user", "list").stdout
    assert [n for n in names if n in listed] == names[:5] and "formname" not in listed
    with _from(inproc, "127.0.0.3") as c:  # another address is not held back by this one
        r = c.post(
            "/services/lakehub/api/signup",
            json={"name": f"other{secrets.token_hex(3)}", "password": "other-password"},
        )
        assert r.status_code == 201, r.text


def test_signup_limit_counts_everyone_over_a_sliding_minute() -> None:
    from lakehub.server.web.signup_limit import SignupLimit

    limit = SignupLimit(per_address=2, per_minute=3)
    assert limit.check("a", now=0) is None and limit.check("a", now=1) is None
    assert "from your address (2 a minute): try again in 58 s" in (limit.check("a", now=2) or "")
    assert limit.check("b", now=3) is None
    assert limit.check("c", now=4) == "too many sign-up requests right now: try again in 56 s"
    assert limit.check("a", now=60.5) is None  # the first request left the window
