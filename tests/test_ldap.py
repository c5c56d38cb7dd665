"""auth = "ldap": people log in with their directory password (a real slapd on loopback)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import closing

import httpx
import pytest
from botocore.exceptions import ClientError

from conftest import Hub, s3_for, start_hub, stop_hub
from servers.slapd import SlapdServer, start_slapd

PASSWORDS = {"lina": "lina-ldap-pass-1", "omar": "omar-ldap-pass-2"}


@pytest.fixture(scope="module")
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlapdServer]:
    try:
        server = start_slapd(tmp_path_factory.mktemp("ldap"))
    except RuntimeError as err:
        pytest.skip(str(err))
    try:
        for uid, password in PASSWORDS.items():
            server.add_user(uid, password, mail=f"{uid}@lakehub.test")
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def ldap_hub(slapd: SlapdServer) -> Iterator[Hub]:
    hub = start_hub(
        wait_for=(),  # no server is started here
        auth="ldap",
        ldap_url=slapd.url,
        ldap_bind_dn_template=json.dumps([f"uid={{username}},{slapd.people_dn}"]),
        ldap_tls="insecure",
        ldap_admin_users=json.dumps(["omar"]),
    )
    try:
        hub.passwords.update(PASSWORDS)
        yield hub
    finally:
        stop_hub(hub)


@pytest.fixture(scope="module")
def lina_portal(ldap_hub: Hub) -> Iterator[httpx.Response]:
    """Lina's first login: the portal page she lands on."""
    with closing(ldap_hub.browser_login("lina")) as c:
        yield c.get("/services/lakehub/")


@pytest.fixture(scope="module")
def omar_token(ldap_hub: Hub) -> str:
    """Omar logs in once (so LakeHub knows him), then the local admin mints him a token."""
    with closing(ldap_hub.browser_login("omar")) as c:
        page = c.get("/services/lakehub/")
        assert "Welcome, omar" in page.text
        assert '<code id="bucket">omar-home</code>' in page.text
    return ldap_hub.token("omar")


def _login_post(hub: Hub, name: str, password: str) -> httpx.Response:
    with httpx.Client(base_url=hub.url, follow_redirects=False, timeout=60) as c:
        c.get("/hub/login")
        return c.post(
            "/hub/login",
            data={"username": name, "password": password, "_xsrf": c.cookies.get("_xsrf", "")},
        )


def test_ldap_user_logs_in_and_lands_on_portal(ldap_hub: Hub, lina_portal: httpx.Response) -> None:
    r = lina_portal
    assert r.status_code == 200, r.text[:500]
    assert r.url.path == "/services/lakehub/"
    assert "Welcome, lina" in r.text
    assert 'id="data-connection"' in r.text
    assert '<code id="bucket">lina-home</code>' in r.text
    # lina is not an administrator: no admin link in the portal's header
    assert 'href="/services/lakehub/admin"' not in r.text


def test_ldap_user_lake_credentials_work(
    ldap_hub: Hub, lina_portal: httpx.Response, omar_token: str
) -> None:
    token = ldap_hub.token("lina")
    r = httpx.get(
        f"{ldap_hub.url}/services/lakehub/api/lake/credentials",
        headers={"Authorization": f"token {token}"},
        timeout=60,
    )
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    creds = r.json()
    assert creds["bucket"] == "lina-home"
    # the portal showed the same key
    assert f'<code id="access-key">{creds["access_key_id"]}</code>' in lina_portal.text

    s3 = s3_for(creds)
    s3.put_object(Bucket="lina-home", Key="hello.txt", Body=b"from ldap")
    assert s3.get_object(Bucket="lina-home", Key="hello.txt")["Body"].read() == b"from ldap"

    # omar has logged in (omar_token), so his bucket exists; lina's keys are refused there
    for call in (
        lambda: s3.put_object(Bucket="omar-home", Key="x", Body=b"x"),
        lambda: s3.list_objects_v2(Bucket="omar-home"),
    ):
        with pytest.raises(ClientError) as err:
            call()
        assert err.value.response["Error"]["Code"] == "AccessDenied"

    # and omar's own keys do work on his bucket
    r = httpx.get(
        f"{ldap_hub.url}/services/lakehub/api/lake/credentials",
        headers={"Authorization": f"token {omar_token}"},
        timeout=60,
    )
    assert r.status_code == 200, r.text
    assert r.json()["bucket"] == "omar-home"
    omar_s3 = s3_for(r.json())
    omar_s3.put_object(Bucket="omar-home", Key="o.txt", Body=b"o")
    with pytest.raises(ClientError) as err:
        omar_s3.get_object(Bucket="lina-home", Key="hello.txt")
    assert err.value.response["Error"]["Code"] == "AccessDenied"


@pytest.mark.parametrize(
    ("name", "password"),
    [
        ("lina", "not-linas-password"),
        ("lina", ""),
        ("nobody", "whatever-password"),
    ],
    ids=["wrong-password", "empty-password", "unknown-user"],
)
def test_bad_ldap_logins_are_refused(ldap_hub: Hub, name: str, password: str) -> None:
    r = _login_post(ldap_hub, name, password)
    assert r.status_code == 403, (r.status_code, r.headers.get("location"), r.text[:300])
    assert "invalid" in r.text.lower()
    assert not any(k.startswith("jupyterhub-hub-login") for k in r.cookies)


def test_unknown_ldap_user_gets_no_lakehub_account(ldap_hub: Hub) -> None:
    _login_post(ldap_hub, "nobody", "whatever-password")
    out = ldap_hub.cli("user", "token", "nobody", check=False)
    assert out.returncode != 0 and "no user named 'nobody'" in out.stderr, out.stderr


def _me(hub: Hub, token: str) -> dict[str, object]:
    r = httpx.get(f"{hub.api}/me", headers={"Authorization": f"token {token}"}, timeout=60)
    assert r.status_code == 200, r.text
    data: dict[str, object] = r.json()
    return data


def test_ldap_user_is_not_an_admin(ldap_hub: Hub, lina_portal: httpx.Response) -> None:
    lina = ldap_hub.token("lina")
    assert _me(ldap_hub, lina) == {"name": "lina", "admin": False, "groups": []}
    r = httpx.get(f"{ldap_hub.api}/users", headers={"Authorization": f"token {lina}"}, timeout=60)
    assert r.status_code == 403


def test_ldap_admin_users_are_admins_in_the_api(
    ldap_hub: Hub, lina_portal: httpx.Response, omar_token: str
) -> None:
    assert _me(ldap_hub, omar_token) == {"name": "omar", "admin": True, "groups": []}
    omar = {"Authorization": f"token {omar_token}"}
    r = httpx.get(f"{ldap_hub.api}/users", headers=omar, timeout=60)
    assert r.status_code == 200, r.text
    assert {u["name"]: u["admin"] for u in r.json()} == {"lina": False, "omar": True}


def test_ldap_admin_sees_the_admin_page(ldap_hub: Hub, omar_token: str) -> None:
    with closing(ldap_hub.browser_login("omar")) as c:
        # a listed administrator holds LakeHub's administrator role (never JupyterHub's admin)
        assert "lakehub-admin" in c.get("/hub/api/user").json()["roles"]
        home = c.get("/services/lakehub/")
        assert 'href="/services/lakehub/admin"' in home.text
        page = c.get("/services/lakehub/admin")
        assert page.status_code == 200
        assert "Administrators only." not in page.text


def test_minting_a_token_keeps_the_administrator_role(ldap_hub: Hub, omar_token: str) -> None:
    """The local admin's `lakehub user token omar` must not demote omar in JupyterHub (where an
    administrator holds LakeHub's role, never JupyterHub's all-powerful admin)."""
    fresh = ldap_hub.cli("user", "token", "omar").stdout.strip()
    r = httpx.get(
        f"{ldap_hub.url}/hub/api/user", headers={"Authorization": f"token {fresh}"}, timeout=60
    )
    assert r.status_code == 200, r.text
    assert r.json()["name"] == "omar"
    assert "lakehub-admin" in r.json()["roles"], "minting a token revoked omar's admin role"
    assert r.json()["admin"] is False


def test_signup_points_to_the_directory(ldap_hub: Hub) -> None:
    with httpx.Client(base_url=ldap_hub.url, timeout=60) as c:
        page = c.get("/services/lakehub/signup")
        assert page.status_code == 200
        assert "LDAP" in page.text and "<form" not in page.text
        r = c.post(
            "/services/lakehub/api/signup", json={"name": "newbie", "password": "newbie-password"}
        )
        assert r.status_code == 400, r.text
        assert "ldap" in r.json()["detail"]
        # nothing was created
        out = ldap_hub.cli("user", "token", "newbie", check=False)
        assert out.returncode != 0 and "no user named 'newbie'" in out.stderr, out.stderr


def test_no_builtin_admin_account_with_ldap(ldap_hub: Hub) -> None:
    """With LDAP there is no local 'admin' account with the bootstrap password."""
    r = _login_post(ldap_hub, "admin", ldap_hub.admin_password)
    assert r.status_code == 403
    out = ldap_hub.cli("user", "token", "admin", check=False)
    assert out.returncode != 0 and "no user named 'admin'" in out.stderr, out.stderr
