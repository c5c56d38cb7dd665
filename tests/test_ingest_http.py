"""Ingestion over HTTP: the bodies fluentd and fluent-bit http outputs send, tokens, refusals."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import msgpack
import pytest

from conftest import Hub
from ingest_client import API, moved, port, rows, setup, user


@pytest.fixture
def ih(ingest_hub: Hub) -> Hub:
    return ingest_hub


def post(
    hub: Hub, tag: str, token: str, content: bytes, ctype: str, **headers: str
) -> httpx.Response:
    return httpx.post(
        f"http://127.0.0.1:{port(hub, 'ingest_http')}/{tag}",
        content=content,
        headers={"Authorization": f"Bearer {token}", "Content-Type": ctype, **headers},
        timeout=30,
    )


def test_every_body_format_lands_as_records(ih: Hub) -> None:
    a = user(ih, "hf")
    src = setup(ih, a, "hformats", ["h.*"])
    tok = src["token"]
    ok = [
        post(ih, "h.json", tok, json.dumps({"f": "json", "n": 1}).encode(), "application/json"),
        # fluent-bit's json format: an array of records with a "date" key
        post(
            ih,
            "h.jsonarray",
            tok,
            json.dumps(
                [{"f": "array", "n": 2, "date": 1.5}, {"f": "array", "n": 3, "date": 2.5}]
            ).encode(),
            "application/json",
        ),
        # fluentd out_http (json, json_array false) and fluent-bit json_lines: NDJSON
        post(
            ih,
            "h.ndjson",
            tok,
            b'{"f": "ndjson", "n": 4}\n\n{"f": "ndjson", "n": 5}\n',
            "application/x-ndjson",
        ),
        post(ih, "h.csv", tok, b"f,n\ncsv,6\ncsv,7\n", "text/csv; charset=utf-8"),
        post(
            ih,
            "h.msgpack",
            tok,
            msgpack.packb({"f": "msgpack", "n": 8})
            + msgpack.packb([1700000000, {"f": "msgpack", "n": 9}]),
            "application/msgpack",
        ),
    ]
    assert [r.status_code for r in ok] == [200] * 5, [r.text for r in ok]
    assert [r.json()["records"] for r in ok] == [1, 2, 2, 2, 2]
    # Basic auth with the token as password (fluent-bit's http_user / http_passwd)
    basic = base64.b64encode(f"any:{tok}".encode()).decode()
    r = httpx.post(
        f"http://127.0.0.1:{port(ih, 'ingest_http')}/h.basic",
        json={"f": "basic", "n": 10},
        headers={"Authorization": f"Basic {basic}"},
    )
    assert r.status_code == 200, r.text
    moved(ih, a, "hformats", 10)
    df = rows(ih, a, "hformats")
    assert df.groupby("f").size().to_dict() == {
        "json": 1,
        "array": 2,
        "ndjson": 2,
        "csv": 2,
        "msgpack": 2,
        "basic": 1,
    }
    assert sorted(str(n) for n in df["n"]) == sorted(str(n) for n in range(1, 11))


def test_bad_requests_get_a_clear_refusal_and_nothing_accepted_is_lost(ih: Hub) -> None:
    a = user(ih, "hb")
    src = setup(ih, a, "hbad", ["hb.*"], max_message_bytes=4096)
    tok = src["token"]
    assert post(ih, "hb.x", tok, b'{"n": 0}', "application/json").status_code == 200
    cases: list[tuple[Any, int, str]] = [
        (post(ih, "hb.x", tok, b'{"n": ', "application/json"), 400, "invalid JSON"),
        (post(ih, "hb.x", tok, b'{"n": 1}\n{oops}\n', "application/x-ndjson"), 400, "line 2"),
        (post(ih, "hb.x", tok, b"[1, 2]", "application/json"), 400, "objects"),
        (post(ih, "hb.x", tok, b"\x93\x01", "application/msgpack"), 400, "msgpack"),
        (post(ih, "hb.x", tok, b"x" * 5000, "application/x-ndjson"), 413, "larger"),
        (post(ih, "hb.x", tok, b"\x00\x01", "application/octet-stream"), 415, "takes records"),
        (post(ih, "hb.x", "lhs_wrong", b'{"n": 1}', "application/json"), 401, "token"),
        (post(ih, "nothere.x", tok, b'{"n": 1}', "application/json"), 403, "may not send"),
    ]
    for resp, status, words in cases:
        assert resp.status_code == status, (resp.status_code, resp.text)
        assert words in resp.json()["detail"], resp.text
    assert post(ih, "hb.x", tok, b'{"n": 9}', "application/json").status_code == 200
    moved(ih, a, "hbad", 2)
    assert sorted(rows(ih, a, "hbad")["n"]) == [0, 9]
    with ih.http(a) as c:  # the six refusals that named the stream, counted within a second
        info = ih.wait(
            lambda: (i := c.get(f"{API}/streams/hbad").json())["errors"] >= 6 and i,
            10,
            "six errors counted",
        )
    assert info["errors"] == 6 and info["last_error"]


def test_a_retried_request_with_the_same_chunk_id_counts_once(ih: Hub) -> None:
    a = user(ih, "hr")
    tok = setup(ih, a, "hretry", ["hr.*"])["token"]
    answers = [
        post(
            ih,
            "hr.x",
            tok,
            b'{"n": 1}\n{"n": 2}\n',
            "application/x-ndjson",
            **{"X-Chunk-Id": "req-1"},
        ).json()
        for _ in range(3)
    ]
    assert [x["duplicate"] for x in answers] == [False, True, True]
    moved(ih, a, "hretry", 2)
    assert len(rows(ih, a, "hretry")) == 2


def test_raw_streams_keep_bytes_in_order(ih: Hub) -> None:
    a = user(ih, "hw")
    tok = setup(ih, a, "hraw", ["raw.*"], kind="raw")["token"]
    parts = [bytes([i]) * (1000 + i) for i in range(5)]
    for p in parts:
        assert post(ih, "raw.frames", tok, p, "application/octet-stream").status_code == 200
    moved(ih, a, "hraw", 5)
    import lakehub
    from lakehub import streams

    client = lakehub.connect(ih.url, ih.token(a))
    with streams.open("hraw", client=client) as f:
        assert f.read() == b"".join(parts)
        f.seek(1000)
        assert f.read(3) == b"\x01\x01\x01"
        assert f.seek(0, 2) == sum(map(len, parts))


def test_rate_limits_answer_429(ih: Hub) -> None:
    a = user(ih, "hl")
    tok = setup(ih, a, "hlimited", ["hl.*"], max_bytes_per_s=2048)["token"]
    body = json.dumps([{"pad": "x" * 200} for _ in range(8)]).encode()
    codes = [post(ih, "hl.x", tok, body, "application/json").status_code for _ in range(4)]
    assert codes[0] == 200 and 429 in codes, codes


def test_a_body_over_a_seconds_rate_passes_once_and_its_debt_holds_back_the_next(ih: Hub) -> None:
    a = user(ih, "hd")
    tok = setup(ih, a, "hdebt", ["hd.*"], max_bytes_per_s=1024)["token"]
    big = json.dumps([{"pad": "x" * 1000, "n": i} for i in range(4)]).encode()  # ~4 s of rate
    assert post(ih, "hd.x", tok, big, "application/json").status_code == 200
    r = post(ih, "hd.x", tok, b'{"n": 9}', "application/json")
    assert r.status_code == 429 and "retry in" in r.json()["detail"], r.text
    assert 2 <= int(r.headers["retry-after"]) <= 4, r.headers
    moved(ih, a, "hdebt", 4)


DEEP = b"[" * 100_000 + b"]" * 100_000


@pytest.mark.parametrize("ctype", ["application/json", "application/x-ndjson"])
def test_deeply_nested_json_is_refused_and_the_receiver_goes_on(ih: Hub, ctype: str) -> None:
    a = user(ih, "deep")
    tag = "deepn" if "ndjson" in ctype else "deepj"
    tok = setup(ih, a, tag, [f"{tag}.*"])["token"]
    assert post(ih, f"{tag}.x", tok, b'{"n": 1}', ctype).status_code == 200
    body = b'{"n": 2}\n' + DEEP if ctype.endswith("ndjson") else DEEP
    r = post(ih, f"{tag}.x", tok, body, ctype)
    assert r.status_code == 400, r.text
    assert "nested too deeply" in r.json()["detail"]
    r = post(ih, f"{tag}.x", tok, b'{"n": 3}', ctype)  # the receiver goes on taking records
    assert r.status_code == 200 and r.json()["records"] == 1, r.text
