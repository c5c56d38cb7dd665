"""Odd input gets a readable 4xx, never a 500, and loses nothing already accepted: lone
surrogates in JSON text, integers beyond the database's, a token living 2^70 s.

In-process (tests/inproc.py): every request goes through the app's own routing, validation and
error handlers. JSON nested 100,000 deep to the HTTP receiver is in test_ingest_http.py (it needs
the ingest process)."""

from __future__ import annotations

import json
import re
import secrets
from typing import Any

import httpx
import pytest

from inproc import API_PREFIX as API
from inproc import InProc
from lakehub.client import tls_context

LONE = "\ud800"  # a lone surrogate: json.dumps spells it "\\ud800", valid JSON, not Unicode


@pytest.fixture(scope="module")
def owner(inproc: InProc) -> str:
    """A user with one of everything the odd requests aim at."""
    name = f"odd{secrets.token_hex(3)}"
    inproc.quick_user(name)
    with inproc.http(name) as c:
        r = c.post(f"{API}/streams", json={"name": "oddkeep", "tags": ["odd.*"]})
        assert r.status_code == 201, r.text
        r = c.post(f"{API}/sources", json={"name": "oddkeep-src", "tags": ["odd.*"]})
        assert r.status_code == 201, r.text
        assert c.put(f"{API}/env/KEEP", json={"value": "v1"}).status_code == 200
        r = c.post(
            f"{API}/connections",
            json={
                "name": "keep",
                "endpoint_url": "http://127.0.0.1:9",
                "access_key_id": "AK",
                "secret_access_key": "SK",
                "verify": False,
            },
        )
        assert r.status_code == 201, r.text
        assert c.post(f"{API}/tasks", json={"name": "keep"}).status_code == 201
    return name


def snapshot(inproc: InProc, name: str) -> dict[str, Any]:
    with inproc.http(name) as c:
        got = {
            p: c.get(f"{API}/{p}")
            for p in ("env", "connections", "streams", "tasks", "datasets/oddkeep")
        }
    assert all(r.status_code == 200 for r in got.values()), {p: r.text for p, r in got.items()}
    j = {p: r.json() for p, r in got.items()}
    return {
        "env": [(v["name"], v["value"]) for v in j["env"]],
        "connections": [(x["name"], x["access_key_id"]) for x in j["connections"]],
        "streams": [(s["name"], s["tags"]) for s in j["streams"]],
        "tasks": sorted(t["name"] for t in j["tasks"]),
        "dataset": (j["datasets/oddkeep"]["description"], j["datasets/oddkeep"]["tags"]),
    }


ODD: list[tuple[str, str, dict[str, Any], str]] = [  # method, path, body, the field named
    ("PUT", "env/ODD", {"value": LONE}, "value"),
    ("PUT", "env/KEEP", {"value": LONE, "secret": True}, "value"),
    ("PUT", "env/KEEP", {"value": "v2", LONE: 1}, "\\ud800"),
    ("PATCH", "datasets/oddkeep", {"description": LONE}, "description"),
    ("PATCH", "datasets/oddkeep", {"tags": ["a", LONE]}, "tags"),
    ("POST", "tasks", {"name": LONE}, "name"),
    (
        "POST",
        "connections",
        {
            "name": "c2",
            "endpoint_url": "http://127.0.0.1:9",
            "access_key_id": "AK",
            "secret_access_key": LONE,
            "verify": False,
        },
        "secret_access_key",
    ),
    ("POST", "streams", {"name": "odd2", "tags": ["o2.*"], "position": 2**63}, "position"),
    ("POST", "streams", {"name": "odd2", "tags": ["o2.*"], "position": -(2**63)}, "position"),
    (
        "POST",
        "sources",
        {"name": "odd2", "tags": ["o2.*"], "max_bytes_per_s": 2**64},
        "max_bytes_per_s",
    ),
    ("POST", "users/{me}/tokens", {"expires_in": 2**70}, "expires_in"),
]


@pytest.mark.parametrize(
    ("method", "path", "body", "field"), ODD, ids=[f"{m} {p} {f}" for m, p, _, f in ODD]
)
def test_odd_json_gets_a_422_naming_the_field(
    inproc: InProc, owner: str, method: str, path: str, body: dict[str, Any], field: str
) -> None:
    before = snapshot(inproc, owner)
    with inproc.http(owner) as c:
        r = c.request(
            method,
            f"{API}/{path.format(me=owner)}",
            content=json.dumps(body),
            headers={"Content-Type": "application/json"},
        )
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert field in str([e["loc"] for e in detail]), detail
    assert all(e["msg"] and "input" not in e for e in detail), detail  # nothing echoed back
    assert snapshot(inproc, owner) == before


def test_every_operation_is_reached_by_its_path_and_nothing_else(inproc: InProc) -> None:
    """Each area's routes are tried only by paths that begin as one of them does
    (``server/web/routing.py``): every operation of the API's document is still found (without
    a token: its own 401, never the router's 404), a path of no area is a 404, a known path with
    another method a 405 naming the allowed ones."""
    with httpx.Client(base_url=inproc.url, timeout=60, verify=tls_context()) as c:
        doc = c.get("/services/lakehub/openapi.json").json()
        missed = []
        for path, ops in doc["paths"].items():
            concrete = re.sub(r"\{[^}]+\}", "x", path)
            for method in ops:
                r = c.request(method.upper(), concrete)
                if r.status_code in (404, 405) and r.json().get("detail") in (
                    "Not Found",
                    "Method Not Allowed",
                ):
                    missed.append(f"{method.upper()} {path}: {r.status_code}")
        assert len(doc["paths"]) > 80 and not missed, missed
        r = c.get(f"{API}/nowhere/at/all")
        assert (r.status_code, r.json()["detail"]) == (404, "Not Found")
        r = c.delete(f"{API}/ops/dashboards")
        assert r.status_code == 405 and r.headers["allow"] == "GET", r.headers
