"""Portal uploads in parts, through the endpoints the page uses, with the user's own rights.

In-process (tests/inproc.py): a portal session over a real lake, no hub."""

from __future__ import annotations

import os
from typing import Any

import httpx

from conftest import creds_of, s3_for
from inproc import InProc

MIB = 1024 * 1024


def uploads(bucket: str) -> str:
    return f"/services/lakehub/browse/{bucket}/uploads"


def send(c: httpx.Client, bucket: str, key: str, data: bytes, **extra: Any) -> httpx.Response:
    """The page's sequence: start, every part, complete. The first answer that is not 200."""
    r = c.post(uploads(bucket), json={"key": key, "size": len(data), **extra})
    if r.status_code != 200:
        return r
    upload_id, size = r.json()["upload_id"], r.json()["part_size"]
    parts = []
    for n, offset in enumerate(range(0, max(len(data), 1), size), start=1):
        r = c.post(
            f"{uploads(bucket)}/{upload_id}/parts/{n}",
            params={"key": key},
            content=data[offset : offset + size],
            headers={"content-type": "application/octet-stream"},
        )
        if r.status_code != 200:
            return r
        parts.append({"number": n, "etag": r.json()["etag"]})
    return c.post(f"{uploads(bucket)}/{upload_id}/complete", json={"key": key, "parts": parts})


def test_upload_in_parts_replaces_only_when_asked(inproc: InProc, inproc_user) -> None:
    name = inproc_user("up")
    bucket, s3 = f"{name}-home", s3_for(creds_of(inproc, name))
    c = inproc.browser_login(name)
    data = os.urandom(20 * MIB + 7)
    r = send(c, bucket, "in/big.bin", data, content_type="application/x-test")
    assert r.status_code == 200, r.text
    assert r.json() == {"key": "in/big.bin", "size": len(data)}
    got = s3.get_object(Bucket=bucket, Key="in/big.bin")
    assert got["Body"].read() == data
    assert got["ETag"].strip('"').endswith("-3")  # three parts of 8 MiB
    assert got["ContentType"] == "application/x-test"
    page = c.get(f"/services/lakehub/browse/{bucket}", params={"prefix": "in/"}).text
    assert 'data-key="in/big.bin"' in page and f'title="{len(data)} bytes">20.0 MiB<' in page
    # an existing object is replaced only when asked
    r = c.post(uploads(bucket), json={"key": "in/big.bin", "size": 3})
    assert r.status_code == 409 and r.json()["detail"] == "in/big.bin already exists"
    assert s3.get_object(Bucket=bucket, Key="in/big.bin")["Body"].read() == data
    assert send(c, bucket, "in/big.bin", b"new", overwrite=True).status_code == 200
    assert s3.get_object(Bucket=bucket, Key="in/big.bin")["Body"].read() == b"new"
    # an empty file is a file too
    assert send(c, bucket, "empty.txt", b"").json() == {"key": "empty.txt", "size": 0}


def test_cancel_drops_the_parts(inproc: InProc, inproc_user) -> None:
    name = inproc_user("up")
    bucket, s3 = f"{name}-home", s3_for(creds_of(inproc, name))
    c = inproc.browser_login(name)
    r = c.post(uploads(bucket), json={"key": "half.bin", "size": 9 * MIB})
    upload_id = r.json()["upload_id"]
    part = f"{uploads(bucket)}/{upload_id}/parts/1"
    octets = {"content-type": "application/octet-stream"}
    r = c.post(part, params={"key": "half.bin"}, content=os.urandom(8 * MIB), headers=octets)
    assert r.status_code == 200, r.text
    pending = s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    assert [u["UploadId"] for u in pending] == [upload_id]
    r = c.post(f"{uploads(bucket)}/{upload_id}/abort", json={"key": "half.bin"})
    assert r.status_code == 200 and r.json()["detail"] == "cancelled the upload of half.bin"
    assert not s3.list_multipart_uploads(Bucket=bucket).get("Uploads")
    r = c.post(part.replace("/1", "/2"), params={"key": "half.bin"}, content=b"x", headers=octets)
    assert r.status_code == 404 and "cancelled or has already finished" in r.json()["detail"]
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket, Prefix="half.bin")


BAD_NAMES = [
    ("../escape.txt", "'.' and '..' are not allowed"),
    ("a/../../b.txt", "'.' and '..' are not allowed"),
    ("/abs.txt", "may not start with '/'"),
    ("", "needs a name"),
    ("   ", "needs a name"),
    ("folder/", "needs a name after the last '/'"),
    ("a//b.txt", "may not contain '//'"),
    ("bell\x07.txt", "control characters"),
    ("x" * 1025, "at most 1024 bytes"),
]


def test_bad_names_are_refused(inproc: InProc, inproc_user) -> None:
    name = inproc_user("bad")
    s3 = s3_for(creds_of(inproc, name))
    s3.put_object(Bucket=f"{name}-home", Key="escape.txt", Body=b"keep")
    c = inproc.browser_login(name)
    for key, why in BAD_NAMES:
        r = c.post(uploads(f"{name}-home"), json={"key": key, "size": 1})
        assert r.status_code == 400 and why in r.json()["detail"], (key, r.text)
    r = c.post(
        f"{uploads(f'{name}-home')}/some-id/parts/1",
        params={"key": "../x"},
        content=b"x",
        headers={"content-type": "application/octet-stream"},
    )
    assert r.status_code == 400 and "'..' are not allowed" in r.json()["detail"]
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=f"{name}-home")["Contents"]] == [
        "escape.txt"
    ]
    assert not s3.list_multipart_uploads(Bucket=f"{name}-home").get("Uploads")


def test_another_users_bucket_is_refused_and_untouched(inproc: InProc, inproc_user) -> None:
    a, b = inproc_user("a"), inproc_user("b")
    s3a = s3_for(creds_of(inproc, a))
    s3a.put_object(Bucket=f"{a}-home", Key="keep.txt", Body=b"A's")
    cb = inproc.browser_login(b)
    r = send(cb, f"{a}-home", "keep.txt", b"B's", overwrite=True)
    assert r.status_code == 403 and r.json()["detail"] == f"You may not write to {a}-home."
    r = send(cb, f"{a}-home", "new.txt", b"B's")
    assert r.status_code == 403
    # an upload A started cannot be fed, finished or cancelled by B
    ca = inproc.browser_login(a)
    upload_id = ca.post(uploads(f"{a}-home"), json={"key": "a.bin", "size": 5}).json()["upload_id"]
    base = f"{uploads(f'{a}-home')}/{upload_id}"
    r = cb.post(
        f"{base}/parts/1",
        params={"key": "a.bin"},
        content=b"evil",
        headers={"content-type": "application/octet-stream"},
    )
    assert r.status_code == 403
    assert cb.post(f"{base}/abort", json={"key": "a.bin"}).status_code == 403
    r = ca.post(
        f"{base}/parts/1",
        params={"key": "a.bin"},
        content=b"A's 5",
        headers={"content-type": "application/octet-stream"},
    )
    parts = [{"number": 1, "etag": r.json()["etag"]}]
    assert cb.post(f"{base}/complete", json={"key": "a.bin", "parts": parts}).status_code == 403
    assert ca.post(f"{base}/complete", json={"key": "a.bin", "parts": parts}).status_code == 200
    objects = {o["Key"]: o["Size"] for o in s3a.list_objects_v2(Bucket=f"{a}-home")["Contents"]}
    assert objects == {"keep.txt": 3, "a.bin": 5}
    assert s3a.get_object(Bucket=f"{a}-home", Key="keep.txt")["Body"].read() == b"A's"


def test_space_grants_decide_and_requests_are_guarded(inproc: InProc, inproc_user) -> None:
    owner, reader = inproc_user("own"), inproc_user("rd")
    space = f"up{os.urandom(3).hex()}"
    inproc.cli("space", "create", space, "--owner", owner)
    inproc.cli("space", "grant", space, "--user", reader, "--access", "read")
    c = inproc.browser_login(reader)
    r = send(c, f"space-{space}", "r.txt", b"r")
    assert r.status_code == 403 and r.json()["detail"] == f"You may not write to space-{space}."
    inproc.cli("space", "grant", space, "--user", reader, "--access", "write")
    assert send(c, f"space-{space}", "r.txt", b"r").status_code == 200
    # another site's page cannot drive the upload, nor a plain form, nor a huge file
    r = c.post(
        uploads(f"space-{space}"),
        json={"key": "x", "size": 1},
        headers={"origin": "http://evil.example"},
    )
    assert r.status_code == 403 and "cross-site" in r.json()["detail"]
    r = c.post(uploads(f"space-{space}"), data={"key": "x", "size": "1"})
    assert r.status_code == 415
    r = c.post(uploads(f"space-{space}"), json={"key": "x", "size": 10**13})
    assert r.status_code == 413 and "lakehub lake cp" in r.json()["detail"]
    # without a session, nothing happens
    anon = inproc.http()
    r = anon.post(uploads(f"space-{space}"), json={"key": "x", "size": 1})
    assert r.status_code in (302, 303, 401)
    keys = [
        o["Key"]
        for o in s3_for(creds_of(inproc, owner)).list_objects_v2(Bucket=f"space-{space}")[
            "Contents"
        ]
    ]
    assert keys == ["r.txt"]
