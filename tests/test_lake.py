"""Per-user lake identities: isolation enforced by the lake itself, rotation, secrets at rest.

In-process (tests/inproc.py) but for secrets at rest, which reads the logs of a real hub's
processes."""

from __future__ import annotations

import pandas as pd
import pytest
from botocore.exceptions import ClientError

import lakehub
from conftest import Hub, creds_of, s3_for
from inproc import InProc


def denied(call, *args, **kwargs) -> str:
    with pytest.raises(ClientError) as info:
        call(*args, **kwargs)
    code = info.value.response["Error"]["Code"]
    assert code in ("AccessDenied", "403"), code
    return code


def test_sdk_credentials_work_with_boto3_pandas_pyarrow(inproc: InProc, inproc_user) -> None:
    name = inproc_user()
    client = lakehub.connect(inproc.url, inproc.token(name))
    creds = client.lake.credentials()
    assert creds.bucket == f"{name}-home"
    assert creds.secret_access_key not in repr(creds)
    s3 = creds.boto3_client()
    s3.put_object(Bucket=creds.bucket, Key="hello.txt", Body=b"hi")
    assert s3.get_object(Bucket=creds.bucket, Key="hello.txt")["Body"].read() == b"hi"
    df = pd.DataFrame({"x": range(100), "y": [str(i) for i in range(100)]})
    url = f"s3://{creds.bucket}/tables/t.parquet"
    df.to_parquet(url, storage_options=creds.storage_options())
    back = pd.read_parquet(url, storage_options=creds.storage_options())
    assert back.equals(df)
    import pyarrow.fs as pafs
    import pyarrow.parquet as pq

    fs = pafs.S3FileSystem(
        access_key=creds.access_key_id,
        secret_key=creds.secret_access_key,
        endpoint_override=creds.endpoint_url,
        scheme="http",
        region="us-east-1",
    )
    assert pq.read_table(f"{creds.bucket}/tables/t.parquet", filesystem=fs).num_rows == 100


def test_user_b_cannot_touch_user_a_bucket(inproc: InProc, inproc_user) -> None:
    a, b = inproc_user("a"), inproc_user("b")
    sa, sb = s3_for(creds_of(inproc, a)), s3_for(creds_of(inproc, b))
    bucket = f"{a}-home"
    sa.put_object(Bucket=bucket, Key="secret.csv", Body=b"a,b\n1,2\n")
    assert [x["Name"] for x in sb.list_buckets()["Buckets"]] == [f"{b}-home"]
    denied(sb.list_objects_v2, Bucket=bucket)
    denied(sb.get_object, Bucket=bucket, Key="secret.csv")
    denied(sb.head_object, Bucket=bucket, Key="secret.csv")
    denied(sb.put_object, Bucket=bucket, Key="planted.txt", Body=b"x")
    denied(sb.delete_object, Bucket=bucket, Key="secret.csv")
    denied(sb.delete_bucket, Bucket=bucket)
    denied(sb.create_bucket, Bucket=f"{a}-stolen")
    # nothing changed for A
    keys = [o["Key"] for o in sa.list_objects_v2(Bucket=bucket)["Contents"]]
    assert keys == ["secret.csv"]
    # B may create buckets under B's own prefix
    sb.create_bucket(Bucket=f"{b}-scratch")
    # B's token only ever returns B's own credentials
    assert creds_of(inproc, b)["bucket"] == f"{b}-home"


def test_rotation_kills_the_old_key_at_once(inproc: InProc, inproc_user) -> None:
    name = inproc_user()
    old = creds_of(inproc, name)
    s3_for(old).put_object(Bucket=old["bucket"], Key="k", Body=b"v")
    with inproc.http(name) as c:
        r = c.post("/services/lakehub/api/lake/credentials/rotate")
        assert r.status_code == 200
        new = r.json()
    assert new["access_key_id"] != old["access_key_id"]
    with pytest.raises(ClientError) as info:
        s3_for(old).get_object(Bucket=old["bucket"], Key="k")
    assert info.value.response["Error"]["Code"] in ("InvalidAccessKeyId", "AccessDenied", "403")
    assert s3_for(new).get_object(Bucket=new["bucket"], Key="k")["Body"].read() == b"v"
    events = inproc.http("admin").get("/services/lakehub/api/events").json()
    assert any(e["action"] == "lake.rotate" and e["target"] == name for e in events)


def test_secrets_are_encrypted_at_rest_and_not_logged(hub: Hub, new_user) -> None:
    name = new_user()
    creds = creds_of(hub, name)
    secret = creds["secret_access_key"].encode()
    password = hub.passwords[name].encode()
    db = hub.data_dir / "state" / "lakehub.sqlite"
    blobs = [db.read_bytes()] + [p.read_bytes() for p in db.parent.glob("lakehub.sqlite-*")]
    assert not any(secret in b for b in blobs), "lake secret stored in clear"
    assert not any(password in b for b in blobs), "password stored in clear"
    for log in (hub.data_dir / "logs").glob("*.log"):
        text = log.read_bytes()
        assert secret not in text, log
        assert password not in text, log
        assert hub.admin_password.encode() not in text, log
    # state files that must hold secrets are private to the hub's account
    for f in (hub.data_dir / "state").iterdir():
        if f.is_file():
            assert f.stat().st_mode & 0o077 == 0, f
    assert (hub.data_dir / "state").stat().st_mode & 0o777 == 0o700


def test_local_admin_has_no_lake_identity(inproc: InProc) -> None:
    import httpx

    token = (inproc.data_dir / "state" / "service.token").read_text().strip()
    r = httpx.get(f"{inproc.api}/lake/credentials", headers={"Authorization": f"token {token}"})
    assert r.status_code == 400


def test_internal_lake_ports_refuse_everyone_else(inproc: InProc, inproc_user) -> None:
    """Past the S3 gateway nothing is open: not the filer, not the volumes, not gRPC."""
    import socket
    import ssl

    import httpx

    name = inproc_user()
    creds = creds_of(inproc, name)
    s3_for(creds).put_object(Bucket=creds["bucket"], Key="private.txt", Body=b"mine")
    ports = inproc.runtime()["ports"]
    filer = f"http://127.0.0.1:{ports['filer']}"
    assert httpx.get(f"{filer}/buckets/{creds['bucket']}/private.txt").status_code == 401
    assert httpx.get(f"{filer}/buckets/{creds['bucket']}/").status_code == 401
    assert httpx.get(f"http://127.0.0.1:{ports['volume']}/1,01637037d6").status_code == 401
    for port in ("filer_grpc", "master_grpc", "volume_grpc", "s3_grpc"):
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        with (
            socket.create_connection(("127.0.0.1", ports[port]), timeout=5) as raw,
            pytest.raises((ssl.SSLError, ConnectionResetError)),
            ctx.wrap_socket(raw) as tls,  # no client certificate
        ):
            tls.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            assert tls.recv(1) == b"", "TLS without a client certificate was accepted"
