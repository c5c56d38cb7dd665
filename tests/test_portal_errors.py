"""A browser on the portal never sees raw JSON: errors are pages in LakeHub's look that say
what went wrong and lead home; a form that is refused comes back as typed (but for passwords).
The JSON API keeps answering JSON. In process: these are matrices, not whole flows."""

from __future__ import annotations

import secrets

import pytest

from inproc import API_PREFIX, InProc

PORTAL = "/services/lakehub/"
HTML = {"Accept": "text/html,application/xhtml+xml"}


@pytest.mark.parametrize(
    ("method", "path", "data", "status", "says"),
    [
        ("GET", "no-such-page", None, 404, "There is no page at /services/lakehub/no-such-page"),
        ("POST", "signup", {"name": "formless"}, 422, "Missing or not valid: password"),
        ("DELETE", "signup", None, 405, "DELETE is not how this page is used"),
    ],
)
def test_portal_errors_are_pages_in_the_lakehub_look(
    inproc: InProc, method: str, path: str, data: dict | None, status: int, says: str
) -> None:
    with inproc.http() as c:
        r = c.request(method, PORTAL + path, data=data, headers=HTML)
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("text/html")
    assert says in r.text and 'class="brand"' in r.text and f'href="{PORTAL}"' in r.text
    assert '{"detail"' not in r.text
    if status == 405:  # the page still says which methods the path takes
        assert "POST" in r.headers["allow"] and "GET" in r.headers["allow"]


def test_the_api_and_scripts_keep_json_errors(inproc: InProc) -> None:
    with inproc.http() as c:
        for headers in (HTML, {}):  # the API answers JSON even to a browser
            r = c.get(f"{API_PREFIX}/no-such-thing", headers=headers)
            assert r.status_code == 404 and r.json() == {"detail": "Not Found"}
        r = c.get(PORTAL + "no-such-page")  # a script that did not ask for HTML
        assert r.status_code == 404 and r.json() == {"detail": "Not Found"}


def test_signup_asks_for_the_password_twice_and_keeps_the_name(inproc: InProc) -> None:
    name = f"twice{secrets.token_hex(3)}"
    with inproc.http() as c:
        form = c.get(PORTAL + "signup", headers=HTML).text
        assert form.count('type="password"') == 2
        r = c.post(
            PORTAL + "signup",
            data={"name": name, "password": "first-password", "confirm": "other-password"},
            headers=HTML,
        )
        assert r.status_code == 400 and "The two passwords differ" in r.text
        assert f'value="{name}"' in r.text and "first-password" not in r.text
        assert name not in inproc.cli("user", "list").stdout  # nothing was requested
        r = c.post(
            PORTAL + "signup",
            data={"name": name, "password": "same-password", "confirm": "same-password"},
            headers=HTML,
        )
        assert r.status_code == 200 and "administrator must approve" in r.text
    assert name in inproc.cli("user", "list").stdout
