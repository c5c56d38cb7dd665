"""Ingestion over the Fluentd Forward protocol: real clients, every mode, bad input, limits."""

from __future__ import annotations

import time

import httpx
import msgpack
import pytest
from fluent import sender

from conftest import Hub, creds_of, s3_for
from ingest_client import (
    API,
    Forward,
    forward,
    ingest_log,
    message,
    moved,
    packed,
    port,
    rows,
    setup,
    user,
)


@pytest.fixture
def ih(ingest_hub: Hub) -> Hub:
    return ingest_hub


def test_fluent_logger_records_land_in_a_catalogued_dataset(ih: Hub) -> None:
    a = user(ih, "fl")
    setup(ih, a, "weblogs", ["web.*"], shared_key=False)
    s = sender.FluentSender("web", host="127.0.0.1", port=port(ih))
    try:
        for i in range(40):
            assert s.emit("access", {"i": i, "path": f"/p/{i}", "ms": i * 0.5}), s.last_error
    finally:
        s.close()
    info = moved(ih, a, "weblogs", 40)
    assert info["dataset"] == f"{a}/weblogs" and info["path"] == f"s3://{a}-home/streams/weblogs/"
    df = rows(ih, a, "weblogs")
    assert sorted(df["i"]) == list(range(40))
    assert set(df["_tag"]) == {"web.access"}
    assert {"year", "month", "day"} <= set(df.columns)  # hive partitions by event day
    assert df["ms"].dtype.kind == "f"
    with ih.http(a) as c:
        ds = c.get(f"{API}/datasets/weblogs").json()
    assert ds["row_count"] == 40 and ds["partitioning"] == ["year", "month", "day"]


def test_every_forward_mode_is_acknowledged_after_the_handshake(ih: Hub) -> None:
    a = user(ih, "fm")
    src = setup(ih, a, "modes", ["mode.*"])
    assert src["key"], "sources get a shared key by default"
    fw = Forward(port(ih), key=src["key"])
    assert fw.pong[0] == "PONG" and fw.pong[1] is True, fw.pong
    sent = {
        "c1": message("mode.message", {"m": "message", "n": 0}, chunk="c1"),
        "c2": forward("mode.forward", [{"m": "forward", "n": i} for i in range(3)], chunk="c2"),
        "c3": packed("mode.packed", [{"m": "packed", "n": i} for i in range(4)], chunk="c3"),
        "c4": packed(
            "mode.gzip", [{"m": "gzip", "n": i} for i in range(5)], chunk="c4", compressed=True
        ),
    }
    fw.send_raw(b"".join(sent.values()))  # pipelined: acks come back in order
    assert [fw.read() for _ in sent] == [{"ack": c} for c in sent]
    fw.close()
    moved(ih, a, "modes", 13)
    df = rows(ih, a, "modes")
    assert df.groupby("m").size().to_dict() == {"message": 1, "forward": 3, "packed": 4, "gzip": 5}
    assert set(df["_tag"]) == {"mode.message", "mode.forward", "mode.packed", "mode.gzip"}


def test_a_retried_chunk_is_stored_once(ih: Hub) -> None:
    a = user(ih, "rt")
    src = setup(ih, a, "retried", ["retry.*"])
    for _ in range(3):  # the client did not see the ack (say) and sends the chunk again
        fw = Forward(port(ih), key=src["key"])
        fw.send_raw(packed("retry.x", [{"n": i} for i in range(10)], chunk="same-chunk"))
        assert fw.read() == {"ack": "same-chunk"}
        fw.close()
    moved(ih, a, "retried", 10)
    time.sleep(1.0)  # a duplicate, had it been stored, would have been moved by now
    assert len(rows(ih, a, "retried")) == 10


@pytest.mark.parametrize(
    "case",
    [
        "truncated",
        "not-an-array",
        "tag-not-string",
        "entries-wrong-type",
        "option-not-map",
        "oversized",
    ],
)
def test_malformed_input_closes_that_connection_only(ih: Hub, case: str) -> None:
    a = user(ih, "bad")
    src = setup(
        ih, a, f"bad-{case}", [f"bad{case.replace('-', '')}.*"], max_message_bytes=64 * 1024
    )
    tag = f"bad{case.replace('-', '')}.x"
    good = Forward(port(ih), key=src["key"])
    good.send_raw(packed(tag, [{"n": 0}], chunk="before"))
    assert good.read() == {"ack": "before"}
    bad_input = {
        "truncated": packed(tag, [{"n": 1}], chunk="t")[:-5],
        "not-an-array": msgpack.packb({"tag": tag}),
        "tag-not-string": msgpack.packb([123, [[1, {"n": 1}]], {"chunk": "w"}]),
        "entries-wrong-type": msgpack.packb([tag, {"no": "entries"}, {"chunk": "w"}]),
        "option-not-map": msgpack.packb([tag, [[1, {"n": 1}]], "chunk"]),
        "oversized": packed(tag, [{"blob": "x" * 2000} for _ in range(100)], chunk="big"),
    }[case]
    bad = Forward(port(ih), key=src["key"])
    bad.send_raw(bad_input)
    if case == "truncated":
        bad.sock.shutdown(1)  # the client goes away mid-message
    assert bad.closed(), "the receiver must close a connection that sent bad input"
    # the receiver goes on serving the other connection, and keeps what it acknowledged
    good.send_raw(packed(tag, [{"n": 2}], chunk="after"))
    assert good.read() == {"ack": "after"}
    good.close()
    moved(ih, a, f"bad-{case}", 2)
    assert sorted(rows(ih, a, f"bad-{case}")["n"]) == [0, 2]
    text = ingest_log(ih)
    assert "refused, closing" in text or "in the middle of a message" in text


def test_a_wrong_shared_key_is_refused_with_a_pong_saying_so(ih: Hub) -> None:
    a = user(ih, "key")
    setup(ih, a, "keyed", ["keyed.*"])
    fw = Forward(port(ih), key="not-the-key")
    assert fw.pong[:3] == ["PONG", False, "shared key mismatch"]
    assert fw.closed()
    assert "shared key mismatch" in ingest_log(ih)


def test_tags_outside_a_sources_patterns_are_refused(ih: Hub) -> None:
    a = user(ih, "tg")
    src = setup(ih, a, "tagged", ["tagged.*"])
    fw = Forward(port(ih), key=src["key"])
    fw.send_raw(packed("other.x", [{"n": 1}], chunk="x"))
    assert fw.closed()
    assert "may not send tag 'other.x'" in ingest_log(ih)


def test_a_source_cannot_write_into_another_users_stream(ih: Hub) -> None:
    a, b = user(ih, "ta"), user(ih, "tb")
    setup(ih, b, "bstream", ["shared.tag.*"])
    with ih.http(a) as c:  # a's source may send the tag, but a cannot write b's stream
        r = c.post(f"{API}/sources", json={"name": "asneaky", "tags": ["shared.tag.*"]})
        key = r.json()["key"]
        token = r.json()["token"]
    fw = Forward(port(ih), key=key)
    fw.send_raw(packed("shared.tag.x", [{"n": 1}], chunk="x"))
    assert fw.closed()
    r = httpx.post(
        f"http://127.0.0.1:{port(ih, 'ingest_http')}/shared.tag.x",
        json={"n": 1},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert r.status_code == 404 and "routes tag" in r.json()["detail"]
    # nor can a even see b's stream, or read it from the lake
    with ih.http(a) as c:
        assert c.get(f"{API}/streams/bstream").status_code == 404
        assert "bstream" not in [s["name"] for s in c.get(f"{API}/streams").json()]
    from botocore.exceptions import ClientError

    with pytest.raises(ClientError):
        s3_for(creds_of(ih, a)).list_objects_v2(Bucket=f"{b}-home", Prefix="streams/")
    with ih.http(b) as c:
        assert c.get(f"{API}/streams/bstream").json()["received_entries"] == 0


def test_a_large_chunk_arriving_in_small_pieces_is_read_whole(ih: Hub) -> None:
    a = user(ih, "pc")
    src = setup(ih, a, "pieces", ["pieces.*"])
    fw = Forward(port(ih), key=src["key"])
    big = packed("pieces.x", [{"n": i, "pad": "p" * 150} for i in range(2000)], chunk="big-1")
    arr = forward("pieces.y", [{"n": 2000 + i} for i in range(500)], chunk="big-2")
    data = big + arr
    for i in range(0, len(data), 7001):  # many reads, split anywhere, even inside a header
        fw.send_raw(data[i : i + 7001])
        time.sleep(0.002)
    assert [fw.read(), fw.read()] == [{"ack": "big-1"}, {"ack": "big-2"}]
    fw.close()
    moved(ih, a, "pieces", 2500)
    assert sorted(rows(ih, a, "pieces")["n"]) == list(range(2500))


def test_a_source_over_its_rate_is_slowed_down_and_loses_nothing(ih: Hub) -> None:
    """Forward has no refusal to give: acks come later instead, so a client sends no faster
    than its source's rate (TCP backpressure), and every acknowledged chunk is stored."""
    a = user(ih, "fr")
    src = setup(ih, a, "fwlimited", ["fl.*"], max_bytes_per_s=4096)
    fw = Forward(port(ih), key=src["key"])
    chunks = [
        packed("fl.x", [{"pad": "x" * 900, "n": c * 4 + i} for i in range(4)], chunk=f"r{c}")
        for c in range(5)
    ]
    assert all(len(c) > 3600 for c in chunks)  # five chunks, ~18 KiB in all, at 4 KiB/s
    t0 = time.monotonic()
    for c, raw in enumerate(chunks):
        fw.send_raw(raw)
        assert fw.read() == {"ack": f"r{c}"}
    took = time.monotonic() - t0
    fw.close()
    assert took >= 2.5, f"~18 KiB went through a 4 KiB/s source in {took:.1f} s"
    moved(ih, a, "fwlimited", 20)
    assert sorted(rows(ih, a, "fwlimited")["n"]) == list(range(20))


def test_a_chunk_far_over_the_rate_passes_and_its_debt_holds_back_the_next(ih: Hub) -> None:
    a = user(ih, "fd")
    src = setup(ih, a, "fwdebt", ["fd.*"], max_bytes_per_s=1024)
    fw = Forward(port(ih), key=src["key"], timeout=30)
    big = packed("fd.x", [{"pad": "x" * 1000, "n": i} for i in range(8)], chunk="big")
    assert len(big) > 8000  # some 7 s of debt past the first second's burst
    t0 = time.monotonic()
    fw.send_raw(big)
    assert fw.read() == {"ack": "big"}
    first = time.monotonic() - t0
    fw.send_raw(packed("fd.x", [{"n": 8}], chunk="small"))
    assert fw.read() == {"ack": "small"}
    took = time.monotonic() - t0
    fw.close()
    assert first < 3, f"the source owed nothing, yet its first chunk waited {first:.1f} s"
    assert took >= 6, f"{len(big)} bytes, then more, went through a 1 KiB/s source in {took:.1f} s"
    moved(ih, a, "fwdebt", 9)
