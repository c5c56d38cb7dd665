"""Your account in the portal and the API: API tokens (shown once, revoked) and your password;
nobody reaches another's tokens or password, administrators included.

In-process (tests/inproc.py): the portal and API over a real lake, JupyterHub's API stood in
for (its tokens are the stand-in's)."""

from __future__ import annotations

import re

import httpx

from inproc import InProc

PORTAL = "/services/lakehub"
API = f"{PORTAL}/api"


def test_a_token_is_shown_once_works_and_is_revoked(inproc: InProc, inproc_user) -> None:
    name, other = inproc_user(), inproc_user()
    c = inproc.browser_login(name)
    r = c.post(f"{PORTAL}/account/tokens", data={"note": "nightly export", "expires": "30"})
    assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
    token = re.search(r'<code id="token-value">([^<]+)</code>', r.text)
    assert token, r.text[-2000:]
    assert token.group(1) not in str(r.url)  # never in a URL
    # the token works for a program, as its owner
    with httpx.Client(base_url=inproc.url, headers={"Authorization": f"token {token[1]}"}) as p:
        assert p.get(f"{API}/me").json()["name"] == name
    # shown once: the page lists it by what it is for, never the token again
    page = c.get(f"{PORTAL}/account").text
    assert "nightly export" in page and token[1] not in page
    with inproc.http(name) as api:
        mine = api.get(f"{API}/me/tokens").json()
    (listed,) = [t for t in mine if t["note"] == "nightly export"]
    assert "token" not in listed
    # another user neither sees nor revokes it
    with inproc.http(other) as api:
        assert all(t["note"] != "nightly export" for t in api.get(f"{API}/me/tokens").json())
        assert api.delete(f"{API}/me/tokens/{listed['id']}").status_code == 404
    o = inproc.browser_login(other)
    r = o.post(f"{PORTAL}/account/tokens/{listed['id']}/revoke")
    assert "you have no token" in r.text
    with httpx.Client(base_url=inproc.url, headers={"Authorization": f"token {token[1]}"}) as p:
        assert p.get(f"{API}/me").status_code == 200  # still works
    # its owner revokes it: refused from then on
    r = c.post(f"{PORTAL}/account/tokens/{listed['id']}/revoke")
    assert r.status_code == 200 and "Token revoked" in r.text
    with httpx.Client(base_url=inproc.url, headers={"Authorization": f"token {token[1]}"}) as p:
        assert p.get(f"{API}/me").status_code in (401, 403)
    # a token needs a purpose and an expiry from the list
    r = c.post(f"{PORTAL}/account/tokens", data={"note": " ", "expires": "30"})
    assert r.status_code == 400 and "say what the token is for" in r.text
    r = c.post(f"{PORTAL}/account/tokens", data={"note": "x", "expires": "3650"})
    assert r.status_code == 400 and 'value="x"' in r.text


def test_a_password_is_changed_only_with_the_current_one(inproc: InProc, inproc_user) -> None:
    name = inproc_user()
    first = inproc.passwords[name]
    c = inproc.browser_login(name)
    form = f"{PORTAL}/account/password"
    r = c.post(form, data={"current": first, "new": "a-new-secret-1", "confirm": "other-2222"})
    assert r.status_code == 400 and "differ" in r.text and "a-new-secret-1" not in r.text
    r = c.post(
        form, data={"current": "wrong-one-1", "new": "a-new-secret-1", "confirm": "a-new-secret-1"}
    )
    assert r.status_code == 400 and "current password is not right" in r.text
    r = c.post(form, data={"current": first, "new": "short", "confirm": "short"})
    assert r.status_code == 400 and "too short" in r.text
    r = c.post(form, data={"current": first, "new": "a-new-secret-1", "confirm": "a-new-secret-1"})
    assert r.status_code == 200 and "Password changed." in r.text
    with inproc.http(name) as api:  # the old one no longer counts, the new one does
        r = api.post(f"{API}/me/password", json={"current": first, "new": "third-secret-3"})
        assert r.status_code == 400
        r = api.post(f"{API}/me/password", json={"current": "a-new-secret-1", "new": "third-3333"})
        assert r.status_code == 200, r.text
    with inproc.admin_http() as admin:  # the local administrator has no password of its own
        assert admin.post("/me/password", json={"current": "x", "new": "y" * 10}).status_code == 400
    events = [(e.action, e.target) for e in inproc.platform.directory.events(20)]
    assert ("user.password", name) in events


def test_an_administrator_cannot_set_or_reset_anothers_password(
    inproc: InProc, inproc_user
) -> None:
    """Whoever knows a password can log in as its owner: administrators manage users without
    becoming them (the hub's operator resets a forgotten one with the CLI)."""
    admin, name = inproc_user(admin=True), inproc_user()
    with inproc.http(admin) as api:
        r = api.patch(f"{API}/users/{name}", json={"password": "admins-choice-1"})
        assert r.status_code == 403 and "lakehub user password" in r.text
        assert api.post(f"{API}/users/{name}/password-reset").status_code in (404, 405)
        r = api.post(f"{API}/me/password", json={"current": "x" * 12, "new": "y" * 12})
        assert r.status_code == 400  # their own, only with their current one
    a = inproc.browser_login(admin)
    r = a.post(f"{PORTAL}/admin/users", data={"action": "reset-password", "name": name})
    assert "unknown action" in r.text
    assert "lakehub user password NAME" in a.get(f"{PORTAL}/admin").text
    with inproc.http(name) as api:  # their password is still the one they had
        r = api.post(
            f"{API}/me/password", json={"current": inproc.passwords[name], "new": "mine-9999"}
        )
        assert r.status_code == 200, r.text
