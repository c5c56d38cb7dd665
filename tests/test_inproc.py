"""The in-process layer's own parts answer as a hub's do: tokens from the stand-in, a real
lake behind the API, and the named faults (the lake down, a space at its quota)."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from conftest import s3_for
from inproc import API_PREFIX, InProc


def test_tokens_users_and_the_real_lake(inproc: InProc, inproc_user) -> None:
    name = inproc_user()
    with inproc.http(name) as c:
        me = c.get(f"{API_PREFIX}/me")
        assert me.status_code == 200 and me.json()["name"] == name, me.text
        creds = c.get(f"{API_PREFIX}/lake/credentials").json()
    s3 = s3_for(creds)
    s3.put_object(Bucket=creds["bucket"], Key="k", Body=b"v")
    assert s3.get_object(Bucket=creds["bucket"], Key="k")["Body"].read() == b"v"
    with inproc.http() as c:
        assert c.get(f"{API_PREFIX}/me").status_code == 401
    with httpx_client(inproc, "not-a-token") as c:
        assert c.get(f"{API_PREFIX}/me").status_code == 401
    with inproc.http("admin") as c:
        assert c.get(f"{API_PREFIX}/users").status_code == 200


def httpx_client(inproc: InProc, token: str):  # type: ignore[no-untyped-def]
    import httpx

    return httpx.Client(base_url=inproc.url, headers={"Authorization": f"token {token}"})


def test_lake_down_is_a_503_naming_the_lake(inproc: InProc, lake_down) -> None:
    with inproc.admin_http() as c:
        r = c.post("/spaces", json={"name": "downspace", "owner": "admin"})
    assert r.status_code == 503 and "is not answering" in r.json()["detail"], r.text


def test_a_full_quota_refuses_writes(inproc: InProc, full_quota) -> None:
    creds = inproc.platform.directory.credentials(full_quota["owner"])
    s3 = s3_for(
        {
            "endpoint_url": creds.endpoint_url,
            "access_key_id": creds.access_key_id,
            "secret_access_key": creds.secret_access_key,
        }
    )
    with pytest.raises(ClientError):
        s3.put_object(Bucket=full_quota["bucket"], Key="two", Body=b"2")
    with inproc.admin_http() as c:
        quotas = {(q["kind"], q["name"]): q for q in c.get("/quotas").json()}
    assert quotas[("space", full_quota["space"])]["blocked"] is True
