"""Streams and sources from the portal: created with the API's checks, a source's token and
key shown once, a refused form kept as typed, and nobody reaching another's.

In-process (tests/inproc.py); what a source's token lets through is tested on real receivers
(test_ingest_*)."""

from __future__ import annotations

import secrets

from inproc import InProc

PORTAL = "/services/lakehub"
API = f"{PORTAL}/api"


def test_a_source_and_a_stream_are_made_and_removed_in_the_portal(
    inproc: InProc, inproc_user
) -> None:
    owner, other = inproc_user(), inproc_user()
    o = inproc.browser_login(owner)
    src, stream = f"fb{secrets.token_hex(3)}", f"st{secrets.token_hex(3)}"
    # refused forms come back as typed
    r = o.post(f"{PORTAL}/streams/sources", data={"name": "Bad Name", "tags": "plant.*"})
    assert r.status_code == 400 and 'value="Bad Name"' in r.text and 'value="plant.*"' in r.text
    r = o.post(f"{PORTAL}/streams", data={"name": stream, "tags": "", "kind": "raw"})
    assert r.status_code == 400 and "at least one tag" in r.text
    assert f'value="{stream}"' in r.text and "<option selected>raw</option>" in r.text
    # a source: its token and shared key in this answer only
    r = o.post(
        f"{PORTAL}/streams/sources",
        data={"name": src, "tags": "plant.* lab.x", "shared_key": "on"},
    )
    assert r.status_code == 201 and r.headers["cache-control"] == "no-store"
    token = r.text.split('<code id="source-token">')[1].split("<")[0]
    key = r.text.split('<code id="source-key">')[1].split("<")[0]
    assert token.startswith("lhs_") and len(key) > 20 and token not in str(r.url)
    again = o.get(f"{PORTAL}/streams").text
    assert f'data-source="{src}"' in again and token not in again and key not in again
    with inproc.http(owner) as api:
        (mine,) = [s for s in api.get(f"{API}/sources").json() if s["name"] == src]
    assert mine["tags"] == ["plant.*", "lab.x"] and mine["shared_key"] is True
    # a stream, then its page
    r = o.post(f"{PORTAL}/streams", data={"name": stream, "tags": "plant.*", "kind": "records"})
    assert r.status_code == 200 and f"Stream {stream}" in r.text and 'id="delete-stream"' in r.text
    # another user sees neither, and removes neither
    x = inproc.browser_login(other)
    listing = x.get(f"{PORTAL}/streams").text
    assert f'data-source="{src}"' not in listing and f'data-name="{stream}"' not in listing
    assert x.get(f"{PORTAL}/streams/{stream}").status_code == 404
    assert f"no source &#39;{src}&#39;" in x.post(f"{PORTAL}/sources/{src}/delete").text
    assert f"no stream &#39;{stream}&#39;" in x.post(f"{PORTAL}/streams/{stream}/delete").text
    with inproc.http(owner) as api:
        assert api.get(f"{API}/streams/{stream}").status_code == 200
        assert any(s["name"] == src for s in api.get(f"{API}/sources").json())
    # its owner removes both
    r = o.post(f"{PORTAL}/streams/{stream}/delete")
    assert r.status_code == 200 and f"stream {stream} deleted" in r.text
    r = o.post(f"{PORTAL}/sources/{src}/delete")
    assert r.status_code == 200 and f"source {src} deleted" in r.text
    with inproc.http(owner) as api:
        assert api.get(f"{API}/streams/{stream}").status_code == 404
        assert all(s["name"] != src for s in api.get(f"{API}/sources").json())
