"""Shared spaces from the portal: create, grant and take back access, forget; with the lake
enforcing each grant through the grantee's own keys, and nobody else learning of the space.

In-process (tests/inproc.py): the portal over a real lake."""

from __future__ import annotations

import secrets

import pytest
from botocore.exceptions import ClientError

from conftest import creds_of, s3_for
from inproc import InProc

PORTAL = "/services/lakehub"


def test_an_owner_opens_a_space_to_a_reader_and_closes_it(inproc: InProc, inproc_user) -> None:
    owner, reader, stranger = inproc_user(), inproc_user(), inproc_user()
    space = f"plant{secrets.token_hex(3)}"
    o = inproc.browser_login(owner)
    # a name the rule refuses: the form comes back with it
    r = o.post(f"{PORTAL}/spaces", data={"name": "Bad Name"})
    assert r.status_code == 400 and 'value="Bad Name"' in r.text
    r = o.post(f"{PORTAL}/spaces", data={"name": space})
    assert r.status_code == 200 and f"space {space} created" in r.text
    bucket = f"space-{space}"
    s3_for(creds_of(inproc, owner)).put_object(Bucket=bucket, Key="a.txt", Body=b"shared")
    reader_s3 = s3_for(creds_of(inproc, reader))
    with pytest.raises(ClientError):
        reader_s3.get_object(Bucket=bucket, Key="a.txt")
    # a grant to nobody known keeps the form as typed
    page = f"{PORTAL}/spaces/{space}"
    r = o.post(f"{page}/grants", data={"kind": "user", "grantee": "nosuchone", "access": "write"})
    assert r.status_code == 404 and 'value="nosuchone"' in r.text
    assert "<option selected>write</option>" in r.text
    r = o.post(f"{page}/grants", data={"kind": "user", "grantee": reader, "access": "read"})
    assert r.status_code == 200 and f'data-grant="user-{reader}"' in r.text
    assert reader_s3.get_object(Bucket=bucket, Key="a.txt")["Body"].read() == b"shared"
    with pytest.raises(ClientError):  # read, not write
        reader_s3.put_object(Bucket=bucket, Key="b.txt", Body=b"mine")
    # the reader sees it, cannot change it; a stranger does not learn it exists
    rd = inproc.browser_login(reader)
    assert f'data-space="{space}"' in rd.get(f"{PORTAL}/spaces").text
    mine = rd.get(page)
    assert mine.status_code == 200 and 'id="grant"' not in mine.text
    r = rd.post(f"{page}/grants", data={"kind": "user", "grantee": stranger, "access": "write"})
    assert r.status_code == 403
    st = inproc.browser_login(stranger)
    assert f'data-space="{space}"' not in st.get(f"{PORTAL}/spaces").text
    assert st.get(page).status_code == 404
    r = st.post(f"{page}/grants", data={"kind": "user", "grantee": stranger, "access": "write"})
    assert r.status_code == 404
    r = st.post(f"{page}/delete")
    assert "no space named" in r.text
    # the owner takes access back: the lake refuses the reader's keys at once
    r = o.post(f"{page}/grants/revoke", data={"kind": "user", "grantee": reader})
    assert r.status_code == 200 and "has no access any more" in r.text
    with pytest.raises(ClientError):
        reader_s3.get_object(Bucket=bucket, Key="a.txt")
    r = o.post(f"{page}/delete")
    assert r.status_code == 200 and f"space {space} forgotten" in r.text
    assert f'data-space="{space}"' not in r.text
