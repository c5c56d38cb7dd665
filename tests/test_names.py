"""Names are per owner: two people each have a dataset, a stream and a source called the same,
and no answer tells one of the other's. A bare name is yours, else the only one you can see;
``owner/name`` says whose; several visible and none yours is a question back, never a guess.

In-process (tests/inproc.py): the catalog and the ingestion registry over a real lake."""

from __future__ import annotations

import secrets

from inproc import InProc

PORTAL = "/services/lakehub"
API = f"{PORTAL}/api"


def grant(inproc: InProc, owner: str, space: str, user: str) -> None:
    with inproc.http(owner) as c:
        r = c.put(f"{API}/spaces/{space}/grants", json={"user": user, "access": "read"})
        assert r.status_code == 200, r.text


def test_two_people_each_have_their_own_sensors_and_never_learn_of_the_others(
    inproc: InProc, inproc_user
) -> None:
    ann, bob, cid = inproc_user("an"), inproc_user("bb"), inproc_user("ci")
    name = f"sensors{secrets.token_hex(2)}"
    spaces = {ann: f"na{secrets.token_hex(3)}", bob: f"nb{secrets.token_hex(3)}"}
    for user in (ann, bob):
        inproc.cli("space", "create", spaces[user], "--owner", user)
        with inproc.http(user) as c:
            body = {
                "name": name,
                "kind": "records",
                "tags": [f"{user}.*"],
                "path": f"s3://space-{spaces[user]}/{name}",
            }
            r = c.post(f"{API}/streams", json=body)
            assert r.status_code == 201, r.text
            assert r.json()["ref"] == r.json()["dataset"] == f"{user}/{name}"
            r = c.post(f"{API}/sources", json={"name": name, "tags": [f"{user}.*"]})
            assert r.status_code == 201, r.text
            again = c.post(f"{API}/streams", json=body)
            assert again.status_code == 409 and "you already have a stream" in again.text
            again = c.post(f"{API}/sources", json={"name": name, "tags": [f"{user}.x"]})
            assert again.status_code == 409 and "you already have a source" in again.text
    for user in (ann, bob):  # the bare name is one's own
        with inproc.http(user) as c:
            assert c.get(f"{API}/streams/{name}").json()["owner"] == user
            assert c.get(f"{API}/datasets/{name}").json()["owner"] == user
            for kind in ("streams", "sources", "datasets"):
                listed = [x["owner"] for x in c.get(f"{API}/{kind}").json() if x["name"] == name]
                assert listed == [user], (user, kind, listed)
    with inproc.http(bob) as c:  # ann's, named in full, looks like nothing at all
        for kind in ("streams", "datasets"):
            r = c.get(f"{API}/{kind}/{ann}/{name}")
            unknown = c.get(f"{API}/{kind}/{ann}/nothing{name}")
            assert r.status_code == unknown.status_code == 404
            assert r.json()["detail"] == unknown.json()["detail"].replace(f"nothing{name}", name)
        assert c.delete(f"{API}/sources/{ann}/{name}").status_code == 404
        assert c.delete(f"{API}/streams/{ann}/{name}").status_code == 404
    # cid reads ann's space: the bare name is the one cid can see
    grant(inproc, ann, spaces[ann], cid)
    with inproc.http(cid) as c:
        assert c.get(f"{API}/streams/{name}").json()["ref"] == f"{ann}/{name}"
        assert c.get(f"{API}/datasets/{name}").json()["ref"] == f"{ann}/{name}"
        assert c.delete(f"{API}/streams/{name}").status_code == 403  # reading is not changing
    # and once bob's is visible too, cid must say which: both are named, neither is guessed
    grant(inproc, bob, spaces[bob], cid)
    with inproc.http(cid) as c:
        for kind in ("streams", "datasets"):
            r = c.get(f"{API}/{kind}/{name}")
            assert r.status_code == 400, r.text
            assert f"{ann}/{name}" in r.json()["detail"] and f"{bob}/{name}" in r.json()["detail"]
            assert c.get(f"{API}/{kind}/{bob}/{name}").json()["owner"] == bob
            assert c.get(f"{API}/{kind}/{ann}/{name}").json()["owner"] == ann
        r = c.get(f"{API}/datasets/{bob}/{name}/preview")  # not a dataset called "preview"
        assert r.status_code == 400 and "no parquet files under" in r.json()["detail"], r.text
    # the portal links by owner/name; deleting one leaves the other's
    page = inproc.browser_login(cid).get(f"{PORTAL}/streams").text
    assert f'streams/{ann}/{name}"' in page and f'streams/{bob}/{name}"' in page
    a = inproc.browser_login(ann)
    assert f"Stream {name}" in a.get(f"{PORTAL}/streams/{ann}/{name}").text
    assert f'sources/{ann}/{name}/delete"' in a.get(f"{PORTAL}/streams").text
    assert a.post(f"{PORTAL}/streams/{name}/delete").status_code == 200
    assert a.post(f"{PORTAL}/sources/{ann}/{name}/delete").status_code == 200
    with inproc.http(bob) as c:
        assert c.get(f"{API}/streams/{name}").json()["owner"] == bob
        assert [s["name"] for s in c.get(f"{API}/sources").json()].count(name) == 1
    with inproc.http(cid) as c:  # ann's stream is gone, her dataset stays: still two of those
        assert c.get(f"{API}/streams/{name}").json()["owner"] == bob
        assert c.get(f"{API}/datasets/{name}").status_code == 400


def test_a_name_the_addresses_use_is_refused(inproc: InProc, inproc_user) -> None:
    dee = inproc_user("de")
    with inproc.http(dee) as c:
        for word in ("preview", "refresh"):
            r = c.post(f"{API}/streams", json={"name": word, "kind": "raw", "tags": ["d.*"]})
            assert r.status_code == 400 and "reserved" in r.json()["detail"], r.text
            body = {"name": word, "path": f"s3://{dee}-home/x", "format": "raw"}
            r = c.post(f"{API}/datasets", json=body)
            assert r.status_code == 400 and "reserved" in r.json()["detail"], r.text
