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


def test_sizes_and_policies_are_set_from_the_environments_page(inproc: InProc, inproc_user) -> None:
    admin, member = inproc_user(admin=True), inproc_user()
    group, size = f"g{member}", f"big{member[-4:]}"
    with inproc.admin_http() as c:
        assert c.post("/groups", json={"name": group}).status_code == 201
        assert c.put(f"/groups/{group}/members/{member}").status_code == 200
    a = inproc.browser_login(admin)
    page = f"{PORTAL}/environments"
    # a size, memory as people write it; a mistake keeps the form
    form = {"name": size, "cpus": "2", "memory": "much", "description": "for big joins"}
    r = a.post(f"{PORTAL}/sizes", data=form)
    assert r.status_code == 400 and "memory: invalid size" in r.text and 'value="much"' in r.text
    r = a.post(f"{PORTAL}/sizes", data={**form, "memory": "3 GiB"})
    assert r.status_code == 200 and f'data-size="{size}"' in r.text
    # a group's policy: that size only, one server, a 30-minute idle timeout
    pol = {"kind": "group", "name": group, "sizes": f"{size} nosuch", "max_servers": "1"}
    r = a.post(f"{PORTAL}/policies", data={**pol, "idle_minutes": "30"})
    assert r.status_code == 400 and "no size named" in r.text and 'value="30"' in r.text
    r = a.post(f"{PORTAL}/policies", data={**pol, "sizes": size, "idle_minutes": "30"})
    assert r.status_code == 200 and f'data-policy="group-{group}"' in r.text
    with inproc.http(member) as api:  # what the member may pick now
        options = api.get(f"{API}/notebooks/options").json()
    assert [z["name"] for z in options["sizes"]] == [size], options
    assert options["idle_timeout"] == 1800
    with inproc.admin_http() as c:  # a group's server count is its members' together
        (mine,) = [p for p in c.get("/notebook-policies").json() if p["name"] == group]
    assert (mine["sizes"], mine["max_servers"], mine["cull_timeout"]) == ([size], 1, 1800)
    # nobody else changes them
    m = inproc.browser_login(member)
    assert "only administrators" in m.post(f"{PORTAL}/policies/group/{group}/delete").text
    assert "only administrators" in m.post(f"{PORTAL}/sizes", data=form).text
    assert 'id="put-policy"' not in m.get(page).text
    # removed
    r = a.post(f"{PORTAL}/policies/group/{group}/delete")
    assert r.status_code == 200 and f'data-policy="group-{group}"' not in r.text
    r = a.post(f"{PORTAL}/sizes/{size}/delete")
    assert r.status_code == 200 and f'data-size="{size}"' not in r.text
