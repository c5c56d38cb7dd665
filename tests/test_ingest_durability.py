"""Durability: acknowledged data survives kill -9 of the receiver exactly once; a lake that stops
answering fills the local buffer up to its bound, then the receivers refuse, losing nothing; a
stream that cannot be written waits on local disk without stopping the others."""

from __future__ import annotations

import json
import os
import random
import signal
import threading
import time

import httpx
import pytest

import lakehub
from conftest import Hub
from ingest_client import API, Forward, moved, packed, port, rows, setup, user
from lakehub import datasets
from lakehub.server.ingest.intake import STATS_EVERY


@pytest.fixture
def ih(ingest_hub: Hub) -> Hub:
    return ingest_hub


def component_pid(hub: Hub, name: str) -> int | None:
    pid = hub.runtime()["components"][name]["pid"]
    return int(pid) if pid else None


class Sender:
    """One Forward connection, opened again whenever the receiver went away."""

    def __init__(self, hub: Hub, key: str) -> None:
        self.hub, self.key = hub, key
        self.fw: Forward | None = None

    def send_until_acked(self, chunk: str, body: bytes, deadline: float) -> int:
        """Send one chunk until it is acknowledged; returns how many times it was sent."""
        tries = 0
        last: Exception | None = None
        while time.monotonic() < deadline:
            tries += 1
            try:
                if self.fw is None:
                    self.fw = Forward(port(self.hub), key=self.key, timeout=5)
                self.fw.send_raw(body)
                ack = self.fw.read()
                assert ack == {"ack": chunk}, ack
                return tries
            except (OSError, IndexError) as err:  # refused, reset, closed: the receiver restarts
                last = err
                if self.fw is not None:
                    self.fw.close()
                    self.fw = None
                time.sleep(0.1)
        raise AssertionError(f"chunk {chunk} was never acknowledged: {last!r}")


def serving(hub: Hub) -> bool:
    try:
        return (
            httpx.get(f"http://127.0.0.1:{port(hub, 'ingest_http')}/health", timeout=2).status_code
            == 200
        )
    except httpx.HTTPError:
        return False


def test_kill_9_at_random_moments_loses_and_duplicates_nothing(ih: Hub) -> None:
    a = user(ih, "ck")
    key = setup(ih, a, "crash", ["crash.*"])["key"]
    chunks, per_chunk, kills = 400, 10, 3
    done = threading.Event()
    killed: list[int] = []

    def killer() -> None:  # kills a receiver that is serving, at a random moment of the traffic
        rng = random.Random(6)
        while len(killed) < kills and not done.is_set():
            ih.wait(lambda: serving(ih) or done.is_set(), 90, "the receiver to serve again")
            time.sleep(rng.uniform(0.1, 0.8))
            pid = component_pid(ih, "ingest")
            if pid is None or done.is_set():
                continue
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                continue
            killed.append(pid)
            ih.wait(
                lambda old=pid: component_pid(ih, "ingest") not in (None, old),
                90,
                "the receiver to be restarted",
            )

    thread = threading.Thread(target=killer)
    thread.start()
    sender = Sender(ih, key)
    retried = 0
    try:
        for c in range(chunks):
            records = [{"id": c * per_chunk + i, "chunk": c} for i in range(per_chunk)]
            body = packed("crash.x", records, chunk=f"chunk-{c}")
            deadline = time.monotonic() + 90  # a restart takes a backoff and a start
            retried += sender.send_until_acked(f"chunk-{c}", body, deadline) - 1
            if len(killed) < kills:
                time.sleep(0.01)  # keep the traffic going while the killer does its work
    finally:
        done.set()
        thread.join(120)
    assert len(killed) == kills, f"only {len(killed)} kills happened while sending"
    info = moved(ih, a, "crash", chunks * per_chunk, timeout=90)
    ids = rows(ih, a, "crash")["id"]
    assert len(ids) == chunks * per_chunk, f"{len(ids)} rows, {ids.duplicated().sum()} duplicated"
    assert set(ids) == set(range(chunks * per_chunk))
    assert info["moved_records"] == chunks * per_chunk
    assert retried >= kills  # some chunks were sent again: each was stored once all the same
    # the counters are taken from the durable log: every chunk counted once, kills or not
    with ih.http(a) as c:

        def received() -> int:
            return int(c.get(f"{API}/streams/crash").json()["received_entries"])

        ih.wait(lambda: received() >= chunks, 30, f"{chunks} entries counted ({received()})")
        time.sleep(2 * STATS_EVERY)  # a count beyond would show by now
        assert received() == chunks


def test_a_stopped_lake_fills_the_buffer_then_refuses_and_loses_nothing(ih: Hub) -> None:
    a = user(ih, "ld")
    tok = setup(ih, a, "lakedown", ["ld.*"])["token"]
    url = f"http://127.0.0.1:{port(ih, 'ingest_http')}/ld.x"
    headers = {"Authorization": f"Bearer {tok}", "Content-Type": "application/x-ndjson"}
    body = b"".join(json.dumps({"n": i, "pad": "x" * 900}).encode() + b"\n" for i in range(60))
    lake = component_pid(ih, "lake")
    assert lake
    accepted = 0
    refusal = None
    os.kill(lake, signal.SIGSTOP)
    try:
        with httpx.Client(timeout=30) as c:
            for _ in range(200):  # 4 MiB of buffer: at most ~75 of these fit
                r = c.post(url, content=body, headers=headers)
                if r.status_code == 503:
                    refusal = r
                    break
                assert r.status_code == 200, r.text
                accepted += 1
    finally:
        os.kill(lake, signal.SIGCONT)
    assert refusal is not None, "the receiver kept accepting with the lake stopped"
    assert "buffer is full" in refusal.json()["detail"] and refusal.headers["retry-after"]
    assert accepted > 10
    moved(ih, a, "lakedown", accepted * 60, timeout=120)
    assert len(rows(ih, a, "lakedown")) == accepted * 60
    r = httpx.post(url, content=body, headers=headers, timeout=30)  # room again
    assert r.status_code == 200, r.text
    with ih.http(a) as c:  # the refusal is counted within a second (the lake may move faster)
        ih.wait(
            lambda: c.get(f"{API}/streams/lakedown").json()["errors"] >= 1,
            10,
            "the refusal counted as an error of the stream",
        )


def test_a_stream_its_owner_cannot_write_waits_on_disk_and_stops_nobody_else(ih: Hub) -> None:
    a, b = user(ih, "pa"), user(ih, "pb")
    tok_a = setup(ih, a, "brokenraw", ["br.*"], kind="raw")["token"]
    tok_b = setup(ih, b, "healthy", ["ok.*"])["token"]
    tok_r = setup(ih, a, "brokenrec", ["bq.*"])["token"]  # A's record stream, parked as well
    bucket = f"{a}-home"
    base = f"http://127.0.0.1:{port(ih, 'ingest_http')}"

    def post_r(c: httpx.Client, recs: list[dict[str, object]]) -> None:
        r = c.post(
            f"{base}/bq.x",
            content="\n".join(map(json.dumps, recs)).encode(),
            headers={"Authorization": f"Bearer {tok_r}", "Content-Type": "application/x-ndjson"},
        )
        assert r.status_code == 200, r.text

    with httpx.Client(timeout=30) as c:  # settled while the lake takes A's writes: code is int
        post_r(c, [{"i": 0, "code": 200}])
    moved(ih, a, "brokenrec", 1)
    ih.cli("quota", "set", "user", a, "--objects", "0")  # the lake refuses every write of A's
    sent_a: list[bytes] = []
    sent_b = 0

    def post_a(c: httpx.Client, size: int = 1000) -> httpx.Response:
        body = f"{len(sent_a):06d}".encode() + b"." * (size - 7) + b"\n"
        r = c.post(
            f"{base}/br.x",
            content=body,
            headers={
                "Authorization": f"Bearer {tok_a}",
                "Content-Type": "application/octet-stream",
            },
        )
        if r.status_code == 200:
            sent_a.append(body)
        return r

    def post_b(c: httpx.Client) -> None:  # ten records; waits out a moment of a full buffer
        nonlocal sent_b
        body = b"".join(json.dumps({"n": sent_b * 10 + i}).encode() + b"\n" for i in range(10))
        headers = {"Authorization": f"Bearer {tok_b}", "Content-Type": "application/x-ndjson"}
        deadline = time.monotonic() + 30
        while (r := c.post(f"{base}/ok.x", content=body, headers=headers)).status_code == 503:
            assert time.monotonic() < deadline, r.text
            time.sleep(0.2)
        assert r.status_code == 200, r.text
        sent_b += 1

    def refused_a(c: httpx.Client, why: bool = True) -> None:
        r = post_a(c, 128 * 1024)
        assert r.status_code == 503, r.text
        detail: str = r.json()["detail"]
        assert "'brokenraw' cannot be written to the lake" in detail, detail
        assert bucket in detail or not why, detail

    with httpx.Client(timeout=30) as c:
        for n in range(10):
            assert post_a(c).status_code == 200
            post_b(c)
            if n == 3:  # fields and types that first come in batches that are parked
                post_r(c, [{"i": 1, "code": "E-1", "late": "x"}])
            elif n == 7:
                post_r(c, [{"i": 2, "code": 5, "later": 1.5}])
        moved(ih, b, "healthy", sent_b * 10, timeout=60)  # B's last entry follows A's last
        with ih.http(a) as api:
            info = api.get(f"{API}/streams/brokenraw").json()
        assert info["moved_records"] == 0 and info["errors"] >= 1
        assert f"s3://{bucket}/streams/brokenraw" in info["last_error"], info
        # A's entries wait on disk, up to half of the 4 MiB buffer; then only A is refused
        deadline = time.monotonic() + 120
        while (r := post_a(c, 128 * 1024)).status_code != 503 or "buffer is full" in r.text:
            assert time.monotonic() < deadline, "the broken stream was never refused"
            if r.status_code == 503:  # the whole buffer, until the writer parks what it holds
                time.sleep(0.3)
        assert 10 < len(sent_a) < 30, len(sent_a)  # about 2 MiB
        refused_a(c)
        post_b(c)
        moved(ih, b, "healthy", sent_b * 10, timeout=60)
        refused_a(c)
        assert c.get(f"{base}/health").json()["held_bytes"] < 2.5 * 2**20  # room for others

        # parked entries survive kill -9 of the receiver, and still count against the bound
        old = component_pid(ih, "ingest")
        assert old
        os.kill(old, signal.SIGKILL)
        ih.wait(lambda: component_pid(ih, "ingest") not in (None, old), 90, "a restart")
        ih.wait(lambda: serving(ih), 90, "the receiver to serve again")
        refused_a(c, why=False)
        post_b(c)
        post_r(c, [{"i": 3, "code": 6, "late": "y"}])
        moved(ih, b, "healthy", sent_b * 10, timeout=60)
        with ih.http(a) as api:
            assert api.get(f"{API}/streams/brokenrec").json()["moved_records"] == 1

        ih.cli("quota", "rm", "user", a)  # repaired: A's parked batches land, in order
        info = moved(ih, a, "brokenraw", len(sent_a), timeout=120)
        assert post_a(c).status_code == 200  # and new data goes behind them
        moved(ih, a, "brokenrec", 4, timeout=60)
        post_r(c, [{"i": 4, "code": 7, "after": True}])  # written at once, on the landed schema
    info = moved(ih, a, "brokenraw", len(sent_a), timeout=60)
    time.sleep(2)  # nothing is written (or counted) twice
    with ih.http(a) as api:
        info = api.get(f"{API}/streams/brokenraw").json()
    assert info["moved_records"] == len(sent_a), info
    client = lakehub.connect(ih.url, ih.token(a))
    with lakehub.streams.open("brokenraw", client=client) as f:
        assert f.read() == b"".join(sent_a)
    ids = rows(ih, b, "healthy")["n"]
    assert sorted(ids) == list(range(sent_b * 10))
    # the parked record batches were conformed to the settled schema and committed theirs
    moved(ih, a, "brokenrec", 5, timeout=60)
    ds = datasets.get("brokenrec", client=client)
    types = {col["name"]: col["type"] for col in ds.schema}  # as the catalog has them
    assert {"late", "later", "after"} <= set(types), types
    assert types["code"] == "int64" and types["later"] == "double", types
    assert types["code__text"] == "string", types
    df = ds.to_pandas().sort_values("i")
    # a number field stays one, its text beside it, in order even across parked batches
    assert [None if v != v else int(v) for v in df["code"]] == [200, None, 5, 6, 7]
    assert [v if isinstance(v, str) else None for v in df["code__text"]] == [None, "E-1"] + [
        None
    ] * 3
    assert [v if isinstance(v, str) else None for v in df["late"]] == [None, "x", None, "y", None]
