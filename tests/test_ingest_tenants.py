"""The line between tenants in ingestion: routing, decompression bombs, revocation, stream paths,
keyless tags and idle connections, tried as two users through the API and both receivers."""

from __future__ import annotations

import gzip
import json
import secrets
import socket
import time

import httpx
import msgpack
import pytest

from conftest import Hub, creds_of, s3_for
from ingest_client import API, Forward, moved, packed, port, rows, setup, user


@pytest.fixture
def ih(ingest_hub: Hub) -> Hub:
    return ingest_hub


def post(
    hub: Hub, tag: str, token: str, body: bytes, ctype: str = "application/json", **headers: str
) -> httpx.Response:
    return httpx.post(
        f"http://127.0.0.1:{port(hub, 'ingest_http')}/{tag}",
        content=body,
        headers={"Authorization": f"Bearer {token}", "Content-Type": ctype, **headers},
        timeout=60,
    )


def acked(fw: Forward, chunk: str) -> bool:
    """True if the receiver acknowledged ``chunk``; False if it closed the connection."""
    try:
        return bool(fw.read() == {"ack": chunk})
    except (ConnectionError, TimeoutError, OSError):
        return False


def peak_rss(hub: Hub, reset: bool = False) -> int:
    """The ingestion process's peak resident memory (VmHWM) in bytes, since the last reset."""
    pid = hub.runtime()["components"]["ingest"]["pid"]
    if reset:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
    with open(f"/proc/{pid}/status") as f:
        line = next(ln for ln in f if ln.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024


def test_a_write_grant_never_moves_another_users_records(ih: Hub) -> None:
    a, b = user(ih, "ta"), user(ih, "tb")
    tag = f"a{secrets.token_hex(3)}"
    src = setup(ih, a, f"own-{tag}", [f"{tag}.*"])
    space = f"bsp{secrets.token_hex(3)}"
    with ih.http(b) as c:  # B alone: a space, a write grant to A, a stream on A's tags first
        assert c.post(f"{API}/spaces", json={"name": space}).status_code == 201
        r = c.put(f"{API}/spaces/{space}/grants", json={"user": a, "access": "write"})
        assert r.status_code == 200, r.text
        r = c.post(
            f"{API}/streams",
            json={
                "name": f"hijack-{tag}",
                "tags": [f"{tag}.*"],
                "path": f"s3://space-{space}/hijack",
                "position": -1000,
            },
        )
        assert r.status_code == 201, r.text
    r = post(ih, f"{tag}.http", src["token"], json.dumps({"n": 1}).encode())
    assert r.status_code == 200 and r.json()["stream"] == f"own-{tag}", r.text
    fw = Forward(port(ih), key=src["key"])
    fw.send_raw(packed(f"{tag}.fwd", [{"n": 2}], chunk="c1"))
    assert acked(fw, "c1")
    fw.close()
    moved(ih, a, f"own-{tag}", 2)
    assert sorted(rows(ih, a, f"own-{tag}")["n"]) == [1, 2]
    with ih.http(b) as c:
        assert c.get(f"{API}/streams/hijack-{tag}").json()["received_entries"] == 0
    listed = s3_for(creds_of(ih, b)).list_objects_v2(Bucket=f"space-{space}", Prefix="hijack/")
    assert listed.get("KeyCount", 0) == 0, listed.get("Contents")


def test_a_decompression_bomb_is_refused_before_any_ack_and_others_go_on(ih: Hub) -> None:
    a = user(ih, "tz")
    tag = f"z{secrets.token_hex(3)}"
    src = setup(ih, a, f"bomb-{tag}", [f"{tag}.*"])
    bomb = gzip.compress(bytes(256 * 2**20), 9)  # 256 MiB of zeros in about 250 KiB
    assert len(bomb) < 1 << 20
    before = peak_rss(ih, reset=True)
    fw = Forward(port(ih), key=src["key"])
    fw.send_raw(
        msgpack.packb(
            [f"{tag}.fwd", bomb, {"compressed": "gzip", "chunk": "bomb"}], use_bin_type=True
        )
    )
    assert not acked(fw, "bomb")  # refused and closed, never acknowledged
    fw.close()
    r = post(
        ih,
        f"{tag}.http",
        src["token"],
        bomb,
        "application/x-ndjson",
        **{"Content-Encoding": "gzip"},
    )
    assert r.status_code == 413 and "inflate" in r.json()["detail"], r.text
    # well-formed compressed data of the same source still lands, over both receivers
    r = post(
        ih,
        f"{tag}.http",
        src["token"],
        gzip.compress(b'{"n": 1}\n{"n": 2}\n'),
        "application/x-ndjson",
        **{"Content-Encoding": "gzip"},
    )
    assert r.status_code == 200 and r.json()["records"] == 2, r.text
    fw = Forward(port(ih), key=src["key"])
    fw.send_raw(packed(f"{tag}.fwd", [{"n": 3}], chunk="ok", compressed=True))
    assert acked(fw, "ok")
    fw.close()
    moved(ih, a, f"bomb-{tag}", 3)
    assert sorted(rows(ih, a, f"bomb-{tag}")["n"]) == [1, 2, 3]
    # inflating 256 MiB would have raised the peak by far more than the source's 16 MiB limit
    assert peak_rss(ih) - before < 96 * 2**20, (before, peak_rss(ih))


def test_revocations_hold_for_ingestion_as_soon_as_the_api_answers(ih: Hub) -> None:
    a, b = user(ih, "tr"), user(ih, "ts")
    tag = f"r{secrets.token_hex(3)}"
    space = f"rsp{secrets.token_hex(3)}"
    with ih.http(b) as c:
        assert c.post(f"{API}/spaces", json={"name": space}).status_code == 201
        assert (
            c.put(f"{API}/spaces/{space}/grants", json={"user": a, "access": "write"}).status_code
            == 200
        )
    with ih.http(a) as c:  # A's stream lives in B's space, by B's grant
        r = c.post(
            f"{API}/streams",
            json={"name": f"in-{tag}", "tags": [f"{tag}.sp"], "path": f"s3://space-{space}/in"},
        )
        assert r.status_code == 201, r.text
    src = setup(ih, a, f"home-{tag}", [f"{tag}.*"])
    fw = Forward(port(ih), key=src["key"])  # authenticated before the source goes
    fw.send_raw(packed(f"{tag}.home", [{"n": 0}], chunk="k0"))
    assert acked(fw, "k0")
    assert post(ih, f"{tag}.sp", src["token"], b'{"n": 1}').json()["stream"] == f"in-{tag}"
    with ih.http(b) as c:
        assert c.delete(f"{API}/spaces/{space}/grants", params={"user": a}).status_code == 204
    r = post(ih, f"{tag}.sp", src["token"], b'{"n": 2}')  # at once: the grant is gone, so
    assert r.status_code == 200 and r.json()["stream"] == f"home-{tag}", r.text  # A's own
    with ih.http(a) as c:
        assert c.delete(f"{API}/sources/home-{tag}-src").status_code == 204
    r = post(ih, f"{tag}.home", src["token"], b'{"n": 3}')
    assert r.status_code == 401, r.text
    fw.send_raw(packed(f"{tag}.home", [{"n": 4}], chunk="k4"))
    assert not acked(fw, "k4")  # the open connection of the deleted source is refused too
    fw.close()
    moved(ih, a, f"home-{tag}", 2)
    assert sorted(rows(ih, a, f"home-{tag}")["n"]) == [0, 2]
    # what was acknowledged before the revocation waits on local disk unless it landed already,
    # and lands once the grant is back: nothing acknowledged is lost
    with ih.http(b) as c:
        assert (
            c.put(f"{API}/spaces/{space}/grants", json={"user": a, "access": "write"}).status_code
            == 200
        )
    moved(ih, a, f"in-{tag}", 1)
    assert list(rows(ih, a, f"in-{tag}")["n"]) == [1]
    # removing a user stops every source of theirs
    c2 = user(ih, "tu")
    src2 = setup(ih, c2, f"gone-{tag}", [f"{tag}g.*"])
    assert post(ih, f"{tag}g.x", src2["token"], b'{"n": 1}').status_code == 200
    with ih.admin_http() as adm:
        assert adm.delete(f"/users/{c2}").status_code == 204
    assert post(ih, f"{tag}g.x", src2["token"], b'{"n": 2}').status_code == 401


@pytest.mark.parametrize(
    "path, words",
    [
        ("s3://{u}-home/../x", "invalid prefix"),
        ("s3://{u}-home/a/./b", "invalid prefix"),
        ("s3://{u}-home/a\x00b", "invalid prefix"),
        ("s3://{u}-home/a\\b", "invalid prefix"),
        ("s3://Bad_Bucket/x", "invalid bucket"),
        ("s3://a/x", "invalid bucket"),
        ("s3://{u}-home" + "/x" * 300, "invalid prefix"),
        ("https://{u}-home/x", "s3://bucket/prefix"),
    ],
)
def test_stream_paths_are_checked_when_made(ih: Hub, path: str, words: str) -> None:
    u = user(ih, "tp")
    with ih.http(u) as c:
        r = c.post(
            f"{API}/streams",
            json={"name": f"p{secrets.token_hex(3)}", "tags": ["p.*"], "path": path.format(u=u)},
        )
        assert r.status_code == 400 and words in r.json()["detail"], r.text
        assert c.get(f"{API}/streams").json() == []


def test_keyless_tags_have_one_owner(ih: Hub) -> None:
    a, b = user(ih, "tk"), user(ih, "tl")
    tag = f"k{secrets.token_hex(3)}"
    setup(ih, a, f"open-{tag}", [f"{tag}.*"], shared_key=False)
    with ih.http(b) as c:
        for pattern in ("*", f"{tag}.x", f"{tag[:2]}*", f"{tag}.[a-z]*"):
            r = c.post(
                f"{API}/sources",
                json={"name": f"s{secrets.token_hex(3)}", "tags": [pattern], "shared_key": False},
            )
            assert r.status_code == 409 and "overlaps" in r.json()["detail"], (pattern, r.text)
        # with a shared key the same patterns are B's to use: the key says who sends
        r = c.post(f"{API}/sources", json={"name": f"s{secrets.token_hex(3)}", "tags": ["*"]})
        assert r.status_code == 201, r.text
    with ih.http(a) as c:  # A's own keyless sources may overlap each other
        r = c.post(
            f"{API}/sources",
            json={"name": f"s{secrets.token_hex(3)}", "tags": [f"{tag}.more"], "shared_key": False},
        )
        assert r.status_code == 201, r.text


def test_connections_that_do_not_say_who_they_are_do_not_hold_memory(ih: Hub) -> None:
    a = user(ih, "tc")
    tag = f"c{secrets.token_hex(3)}"
    setup(ih, a, f"open-{tag}", [f"{tag}.*"], shared_key=False, max_message_bytes=64 * 1024)

    def partial(head: bytes, size: int) -> bool:
        """Send ``size`` bytes of a message that never ends; True if the receiver closed."""
        with socket.create_connection(("127.0.0.1", port(ih)), timeout=10) as s:
            s.sendall(head)
            sent = len(head)
            try:
                while sent < size:
                    s.sendall(bytes(min(65536, size - sent)))
                    sent += 65536
                s.settimeout(60)
                return s.recv(1) == b""
            except OSError:
                return True

    # a keyless message larger than its source's limit is cut off near the limit
    head = b"\x92" + msgpack.packb(f"{tag}.x") + b"\xc6" + (8 * 2**20).to_bytes(4, "big")
    started = time.monotonic()
    assert partial(head, 8 * 2**20)
    # a message with no tag in its first KiB, or with a tag no one takes, is refused at once
    assert partial(b"\x92\xdb" + (2**30).to_bytes(4, "big"), 4 * 2**20)
    assert partial(
        b"\x92" + msgpack.packb("nobody.takes.this") + b"\xc6" + (2**20).to_bytes(4, "big"), 2**20
    )
    assert time.monotonic() - started < 30
    # a message that stalls half way is dropped with its connection after a bounded wait
    with socket.create_connection(("127.0.0.1", port(ih)), timeout=60) as s:
        s.sendall(b"\x92" + msgpack.packb(f"{tag}.x") + b"\xc4\xff" + bytes(10))
        t0 = time.monotonic()
        assert s.recv(1) == b""
        assert time.monotonic() - t0 < 45
