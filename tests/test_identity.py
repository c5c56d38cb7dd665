"""Identity: first admin, sign-up with approval, tokens, admin rights, clear refusals.

What goes through JupyterHub's login page runs on a real hub; the API's refusals, groups and
the admin page run in-process (tests/inproc.py)."""

from __future__ import annotations

import httpx

from conftest import Hub
from inproc import InProc


def login_post(hub: Hub, name: str, password: str) -> httpx.Response:
    with httpx.Client(base_url=hub.url, follow_redirects=True, timeout=60) as c:
        c.get("/hub/login")
        return c.post(
            "/hub/login",
            data={"username": name, "password": password, "_xsrf": c.cookies.get("_xsrf", "")},
        )


def test_first_admin_lands_on_portal(hub: Hub) -> None:
    c = hub.browser_login("admin")
    r = c.get("/")
    assert str(r.url).endswith("/services/lakehub/")
    assert "Welcome, admin" in r.text and "admin-home" in r.text
    assert c.get("/services/lakehub/admin").status_code == 200


def test_wrong_password_is_refused_with_a_message(hub: Hub, new_user) -> None:
    name = new_user()
    r = login_post(hub, name, "not-the-password")
    assert r.status_code == 403 and "Invalid username or password" in r.text
    r = login_post(hub, "nobodyhere", "whatever123")
    assert r.status_code == 403 and "Invalid username or password" in r.text


def test_signup_waits_for_approval(hub: Hub) -> None:
    # an address of its own: sign-ups are limited per client address (see test_admin_reach)
    local = httpx.HTTPTransport(local_address="127.0.0.4")
    with httpx.Client(base_url=hub.api, timeout=60, transport=local) as c:
        r = c.post("/signup", json={"name": "dora", "password": "dora-password"})
        assert r.status_code == 201, r.text
        assert c.post("/signup", json={"name": "dora", "password": "x" * 9}).status_code == 409
        bad = c.post("/signup", json={"name": "Bad Name!", "password": "x" * 9})
        assert bad.status_code == 400 and "invalid user name" in bad.json()["detail"]
        short = c.post("/signup", json={"name": "ellen", "password": "short"})
        assert short.status_code == 400 and "too short" in short.json()["detail"]
    r = login_post(hub, "dora", "dora-password")
    assert r.status_code == 403 and "waiting for an administrator" in r.text
    assert "dora" in hub.cli("user", "list").stdout
    out = hub.cli("user", "approve", "dora").stdout
    assert "approved" in out
    r = login_post(hub, "dora", "dora-password")
    assert r.status_code == 200 and "Welcome, dora" in r.text
    events = hub.http("admin").get("/services/lakehub/api/events").json()
    actions = [(e["action"], e["target"]) for e in events]
    assert ("user.signup", "dora") in actions and ("user.approve", "dora") in actions


def test_cli_user_add_and_token(hub: Hub) -> None:
    password = hub.add_user("frank")
    assert len(password) >= 12
    dup = hub.cli("user", "add", "frank", check=False)
    assert dup.returncode == 1 and dup.stderr.strip() == "error: user 'frank' already exists"
    bad = hub.cli("user", "add", "Not-Valid", check=False)
    assert (
        bad.returncode == 1 and "invalid user name" in bad.stderr and "Traceback" not in bad.stderr
    )
    missing = hub.cli("user", "token", "ghost", check=False)
    assert missing.returncode == 1 and "no user named 'ghost'" in missing.stderr
    with hub.http("frank") as c:
        me = c.get("/services/lakehub/api/me").json()
    assert me == {"name": "frank", "admin": False, "groups": []}
    # the password printed once works on the login page
    assert login_post(hub, "frank", password).status_code == 200


def test_tokens_are_listed_and_revoked_on_jupyterhub_itself(hub: Hub, new_user) -> None:
    """The account page's calls against JupyterHub's real API: a browser session's token is not
    listed as an API token; a revoked one is refused by LakeHub and JupyterHub at once."""
    name = new_user("tok")
    browser = hub.browser_login(name)
    assert browser.get("/services/lakehub/account").status_code == 200  # an OAuth session
    made = browser.post(
        "/services/lakehub/account/tokens", data={"note": "cron job", "expires": "7"}
    ).text
    token = made.split('<code id="token-value">')[1].split("<")[0]
    auth = {"Authorization": f"token {token}"}
    with httpx.Client(base_url=hub.url, headers=auth, timeout=30) as c:
        assert c.get("/services/lakehub/api/me").json()["name"] == name
        mine = c.get("/services/lakehub/api/me/tokens").json()
        assert sorted(t["note"] for t in mine) == ["cron job", "tests"], mine
        (job,) = [t for t in mine if t["note"] == "cron job"]
        assert job["expires_at"] and "token" not in job
        assert c.delete(f"/services/lakehub/api/me/tokens/{job['id']}").status_code == 204
        assert c.get("/services/lakehub/api/me").status_code == 401
        assert c.get(f"/hub/api/users/{name}").status_code == 403
    with hub.http(name) as c:  # their other token still works
        assert [t["note"] for t in c.get("/services/lakehub/api/me/tokens").json()] == ["tests"]


def test_malformed_and_missing_tokens(inproc: InProc) -> None:
    with httpx.Client(base_url=inproc.api, timeout=30) as c:
        r = c.get("/me")
        assert r.status_code == 401 and "authentication required" in r.json()["detail"]
        r = c.get("/me", headers={"Authorization": "token not-a-real-token"})
        assert r.status_code == 401 and r.json()["detail"] == "invalid or expired token"
        r = c.get("/me", headers={"Authorization": "Bearer"})
        assert r.status_code == 401


def test_non_admins_cannot_administer(inproc: InProc, inproc_user) -> None:
    name = inproc_user()
    with inproc.http(name) as c:
        for method, path, body in [
            ("GET", "/users", None),
            ("POST", "/users", {"name": "mallory"}),
            ("POST", "/users/admin/approve", None),
            ("DELETE", "/users/admin", None),
            ("GET", "/events", None),
            ("POST", "/groups", {"name": "evil"}),
            ("PATCH", f"/users/{name}", {"admin": True}),
        ]:
            r = c.request(method, f"/services/lakehub/api{path}", json=body)
            assert r.status_code == 403, (method, path, r.text)
        # only the hub itself may ask for spawn environments, and tokens only for yourself
        plan = c.post(f"/services/lakehub/api/internal/spawn-plan/{name}", json={})
        assert plan.status_code == 403
        assert c.post("/services/lakehub/api/users/admin/tokens", json={}).status_code == 403
        assert c.get("/services/lakehub/api/me").json()["admin"] is False
    assert "mallory" not in inproc.cli("user", "list").stdout


def test_groups_and_admin_rights(inproc: InProc, inproc_user) -> None:
    a, b = inproc_user(), inproc_user()
    inproc.cli("group", "create", "analysts")
    inproc.cli("group", "add", "analysts", a)
    assert "analysts" in inproc.cli("group", "list").stdout
    with inproc.http(a) as c:
        assert c.get("/services/lakehub/api/me").json()["groups"] == ["analysts"]
    inproc.cli("group", "remove", "analysts", a)
    with inproc.http("admin") as c:
        r = c.patch(f"/services/lakehub/api/users/{b}", json={"admin": True})
        assert r.status_code == 200
        assert c.get("/services/lakehub/api/users").status_code == 200
    with inproc.http(b) as c:
        assert c.get("/services/lakehub/api/users").status_code == 200
    with inproc.http("admin") as c:
        assert c.delete("/services/lakehub/api/users/admin").status_code == 400
        assert c.delete(f"/services/lakehub/api/users/{a}").status_code == 204
    assert a not in inproc.cli("user", "list").stdout


def test_portal_admin_actions(inproc: InProc) -> None:
    c = inproc.browser_login("admin")
    r = c.post("/services/lakehub/admin/users", data={"action": "create", "name": "gina"})
    assert r.status_code == 200 and "Password (shown once)" in r.text
    password = r.text.split("Password (shown once): ")[1].split("<")[0].strip()
    assert len(password) >= 12
    assert not r.history and password not in str(r.url)  # answered in place: no URL carries it
    assert r.headers["cache-control"] == "no-store"
    assert password not in c.get("/services/lakehub/admin").text  # a reload does not show it
    r = c.post("/services/lakehub/admin/users", data={"action": "create", "name": "gina"})
    assert "already exists" in r.text
    r = c.post(
        "/services/lakehub/admin/users",
        data={"action": "delete", "name": "gina"},
        headers={"Origin": "http://evil.example"},
    )
    assert r.status_code == 403
    assert "gina" in inproc.cli("user", "list").stdout
