"""A record stream whose fields change type from batch to batch reads as one table: every
field with one type, later fields null before they came, and no value lost."""

from __future__ import annotations

import json

import httpx
import pytest

import lakehub
from conftest import Hub
from ingest_client import API, moved, port, setup, user
from lakehub import datasets


@pytest.fixture
def ih(ingest_hub: Hub) -> Hub:
    return ingest_hub


def send(hub: Hub, token: str, recs: list[dict[str, object]]) -> None:
    r = httpx.post(
        f"http://127.0.0.1:{port(hub, 'ingest_http')}/d.x",
        content="\n".join(map(json.dumps, recs)).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/x-ndjson"},
        timeout=30,
    )
    assert r.status_code == 200, r.text


def test_types_that_drift_across_batches_keep_every_value(ih: Hub) -> None:
    a = user(ih, "dr")
    tok = setup(ih, a, "drift", ["d.*"])["token"]
    batches = [
        [
            {"i": 1, "code": 200, "amount": 10, "meta": {"a": 1}},
            {"i": 2, "code": 404, "amount": 20, "meta": None},
        ],
        [{"i": 3, "code": "E-17", "amount": 2.5, "host": "web1", "meta": {"b": "x"}}],
        [{"i": 4, "code": 500, "amount": 7, "host": None, "meta": "plain"}],
    ]
    done = 0
    for recs in batches:  # one batch each: the writer moves one before the next is sent
        send(ih, tok, recs)
        done += len(recs)
        moved(ih, a, "drift", done)
    ds = datasets.get("drift", client=lakehub.connect(ih.url, ih.token(a)))
    df = ds.to_pandas().sort_values("i")
    # a number field stays one: the text that came later is kept beside it, and said
    assert [None if c != c else int(c) for c in df["code"]] == [200, 404, None, 500]
    assert [c if isinstance(c, str) else None for c in df["code__text"]] == [
        None,
        None,
        "E-17",
        None,
    ]
    assert list(df["amount"]) == [10.0, 20.0, 2.5, 7.0]  # int, then float: numbers
    assert str(df["amount"].dtype) == "float64"
    assert [h if isinstance(h, str) else None for h in df["host"]] == [None, None, "web1", None]
    assert [m if m is None else dict(m) for m in df["meta"]] == [
        {"a": 1, "b": None},
        None,
        {"a": None, "b": "x"},
        None,
    ]
    # an object field has no cast from text: a later string is kept beside it
    assert [m if isinstance(m, str) else None for m in df["meta__text"]] == [None] * 3 + ["plain"]
    out = ds.sql(
        "select count(*) n, sum(amount) total, count(host) hosts, max(code) top "
        "from drift where year >= 2024"
    )
    assert out.to_dict("records") == [{"n": 4, "total": 39.5, "hosts": 1, "top": 500}]
    names = [c["name"] for c in ds.schema]  # the catalog knows every field, with its type
    assert {"code", "code__text", "amount", "host", "meta__text", "year"} <= set(names)
    types = {c["name"]: c["type"] for c in ds.schema}
    assert (types["amount"], types["code"]) == ("double", "int64")
    # each batch that kept a value beside its field is an error the stream lists, newest first
    info = lakehub.streams.get("drift", client=lakehub.connect(ih.url, ih.token(a)))
    assert info["errors"] == 2, info
    assert [e["message"] for e in info["recent_errors"]] == [
        "values not of their field's type were kept beside it: 1 in 'meta' (e.g. 'plain'), "
        "kept in 'meta__text'",
        "values not of their field's type were kept beside it: 1 in 'code' (e.g. 'E-17'), "
        "kept in 'code__text'",
    ]
    with ih.http(a) as c:
        preview = c.get(f"{API}/datasets/drift/preview", params={"limit": 10}).json()
    assert {"host", "meta__text"} <= set(preview["columns"]), preview
    assert len(preview["rows"]) == 4
