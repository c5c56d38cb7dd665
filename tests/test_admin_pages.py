"""The administrators' page: quotas set and removed with sizes as people write them, and every
running server listed; none of it for anyone else.

In-process (tests/inproc.py): a running server is a record in JupyterHub's stand-in."""

from __future__ import annotations

from inproc import InProc

PORTAL = "/services/lakehub"
API = f"{PORTAL}/api"


def test_quotas_are_set_and_removed_from_the_admin_page(inproc: InProc, inproc_user) -> None:
    admin, name = inproc_user(admin=True), inproc_user()
    a = inproc.browser_login(admin)
    form = {"kind": "user", "name": name, "max_bytes": "lots", "max_objects": ""}
    r = a.post(f"{PORTAL}/admin/quotas", data=form)
    assert r.status_code == 400 and "invalid size" in r.text and 'value="lots"' in r.text
    assert f'value="{name}"' in r.text
    r = a.post(f"{PORTAL}/admin/quotas", data={**form, "max_bytes": ""})
    assert r.status_code == 400 and "give a size" in r.text
    r = a.post(f"{PORTAL}/admin/quotas", data={**form, "max_bytes": "5 MiB", "max_objects": "9"})
    assert r.status_code == 200 and f'data-quota="user-{name}"' in r.text
    with inproc.http(name) as api:  # the user sees their own, as the lake measures it
        (mine,) = api.get(f"{API}/quotas").json()
    assert (mine["max_bytes"], mine["max_objects"]) == (5 * 2**20, 9)
    # nobody else sets or removes one
    u = inproc.browser_login(name)
    r = u.post(f"{PORTAL}/admin/quotas", data={**form, "max_bytes": "1 TiB"})
    assert "Administrators only" in r.text
    r = u.post(f"{PORTAL}/admin/quotas/remove", data={"kind": "user", "name": name})
    assert "Administrators only" in r.text
    with inproc.http(name) as api:
        assert api.get(f"{API}/quotas").json()[0]["max_bytes"] == 5 * 2**20
    r = a.post(f"{PORTAL}/admin/quotas/remove", data={"kind": "user", "name": name})
    assert r.status_code == 200 and f'data-quota="user-{name}"' not in r.text
    with inproc.http(name) as api:
        assert api.get(f"{API}/quotas").json() == []


def test_the_admin_page_lists_every_running_server(inproc: InProc, inproc_user) -> None:
    admin, name = inproc_user(admin=True), inproc_user()
    # a server as JupyterHub reports it (the stand-in's record: nothing runs in process)
    opts = {"environment": "datascience", "size": "small"}
    servers = inproc.hub_standin.users[name]["servers"]
    servers["exp"] = {"name": "exp", "ready": True, "user_options": opts}
    try:
        page = inproc.browser_login(admin).get(f"{PORTAL}/admin").text
        row = page.split(f'data-server="{name}/exp">')[1].split("</tr>")[0]
        assert "datascience" in row and "small" in row, row
        assert "Running now" not in inproc.browser_login(name).get(f"{PORTAL}/admin").text
    finally:
        servers.pop("exp", None)
