"""Benchmark: ingestion throughput to acknowledged-and-durable, and the lag until the lake has it.

LakeHub: a hub from ``lakehub up --detach`` (receivers on free ports), a user, a records stream
and a source with a shared key. Clients send PackedForward chunks of ``--chunk`` records of
about 200 bytes each (``chunk`` option set: every chunk waits for its ack, ``--window`` chunks
in flight per connection, ``--conns`` connections in processes of their own), and HTTP NDJSON
bodies of the same records (``--conns`` client processes, each with ``--window`` requests in
flight on connections of their own: as many in flight as Forward has). A run lasts
``--seconds``; the rate counts acknowledged records only. Lag: from the last ack until the
stream's counters say every record is in the lake (Parquet written), polled every 50 ms through
the API.

Anchor, same run, same client: a plain single-threaded Forward receiver written here (one
``selectors`` loop, the entries appended to a file and fsynced for every chunk, then the ack).

    .venv/bin/python bench/ingest.py [--runs 3] [--seconds 8] [--conns 4] [--keep]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing as mp
import os
import secrets
import selectors
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import msgpack

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib as B  # noqa: E402

API = "/services/lakehub/api"


def record(i: int) -> dict[str, Any]:
    return {
        "host": f"web-{i % 16:02d}",
        "level": "info",
        "status": 200,
        "bytes": 5000 + i % 997,
        "path": f"/api/v1/items/{i % 100000}",
        "ua": "Mozilla/5.0 (X11; Linux x86_64) bench",
        "msg": f"GET /api/v1/items/{i % 100000} HTTP/1.1 200 {5000 + i % 997} 0.0{i % 90:02d}",
        "trace": f"{i:016x}",
    }


def packed_entries(n: int) -> bytes:
    now = int(time.time())
    return b"".join(msgpack.packb([now, record(i)]) for i in range(n))


def ndjson(n: int) -> bytes:
    return b"".join(json.dumps(record(i)).encode() + b"\n" for i in range(n))


# --------------------------------------------------------------------------- Forward clients
def _connect(port: int, key: str | None) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    if key:
        u = msgpack.Unpacker(raw=False)
        while (helo := next(u, None)) is None:
            u.feed(s.recv(4096))
        salt, host = os.urandom(16), b"bench"
        digest = hashlib.sha512(salt + host + helo[1]["nonce"] + key.encode()).hexdigest()
        s.sendall(msgpack.packb(["PING", host, salt, digest, "", ""]))
        while (pong := next(u, None)) is None:
            u.feed(s.recv(4096))
        assert pong[1] is True, pong
    return s


def forward_client(
    port: int, key: str | None, chunk: int, window: int, seconds: float, name: str, out: Any
) -> None:
    entries = packed_entries(chunk)
    s = _connect(port, key)
    u = msgpack.Unpacker(raw=False)
    sent = acked = 0
    end = time.monotonic() + seconds
    while True:
        while sent - acked < window and time.monotonic() < end:
            s.sendall(
                msgpack.packb(["bench.fw", entries, {"chunk": f"{name}-{sent}", "size": chunk}])
            )
            sent += 1
        if acked == sent:
            break
        data = s.recv(65536)
        if not data:
            raise RuntimeError("the receiver closed the connection")
        u.feed(data)
        acked += sum(1 for _ in u)
    out.put((acked * chunk, time.monotonic()))
    s.close()


def run_forward(port: int, key: str | None, args: argparse.Namespace) -> tuple[float, float, int]:
    """Records acknowledged over ``conns`` processes: (records/s, time of the last ack, count)."""
    ctx = mp.get_context("fork")
    out = ctx.Queue()
    tag = secrets.token_hex(3)
    procs = [
        ctx.Process(
            target=forward_client,
            args=(port, key, args.chunk, args.window, args.seconds, f"{tag}-{i}", out),
        )
        for i in range(args.conns)
    ]
    t0 = time.monotonic()
    for p in procs:
        p.start()
    results = [out.get(timeout=args.seconds + 120) for _ in procs]
    for p in procs:
        p.join()
    last, count = max(t for _, t in results), sum(n for n, _ in results)
    return count / (last - t0), last, count


def http_client(
    url: str, token: str, body: bytes, n: int, seconds: float, window: int, out: Any
) -> None:
    """``window`` requests in flight (HTTP/1.1 has no pipelining: one connection each)."""
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/x-ndjson"}
    end = time.monotonic() + seconds
    acked = [0] * window
    errors: list[str] = []

    def send(i: int) -> None:
        with httpx.Client(timeout=60) as c:
            while time.monotonic() < end and not errors:
                r = c.post(url, content=body, headers=headers)
                if r.status_code != 200:
                    errors.append(f"HTTP {r.status_code}: {r.text[:200]}")
                    return
                acked[i] += n

    threads = [threading.Thread(target=send, args=(i,)) for i in range(window)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError(errors[0])
    out.put((sum(acked), time.monotonic()))


def run_http(url: str, token: str, args: argparse.Namespace) -> tuple[float, float, int]:
    ctx = mp.get_context("fork")
    out = ctx.Queue()
    body = ndjson(args.chunk)
    procs = [
        ctx.Process(
            target=http_client, args=(url, token, body, args.chunk, args.seconds, args.window, out)
        )
        for _ in range(args.conns)
    ]
    t0 = time.monotonic()
    for p in procs:
        p.start()
    results = [out.get(timeout=args.seconds + 120) for _ in procs]
    for p in procs:
        p.join()
    last, count = max(t for _, t in results), sum(n for n, _ in results)
    return count / (last - t0), last, count


# --------------------------------------------------------------------------- the anchor
def anchor_server(sock: socket.socket, path: str) -> None:
    """A plain Forward receiver: one thread, fsync per chunk, then the ack."""
    sel = selectors.DefaultSelector()
    sock.setblocking(False)
    sel.register(sock, selectors.EVENT_READ)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    unpackers: dict[socket.socket, Any] = {}
    while True:
        for key, _ in sel.select():
            if key.fileobj is sock:
                conn, _ = sock.accept()
                conn.setblocking(True)
                sel.register(conn, selectors.EVENT_READ)
                unpackers[conn] = msgpack.Unpacker(raw=True, max_buffer_size=256 * 2**20)
                continue
            conn = key.fileobj  # type: ignore[assignment]
            data = conn.recv(262144)
            if not data:
                sel.unregister(conn)
                conn.close()
                continue
            u = unpackers[conn]
            u.feed(data)
            for msg in u:
                os.write(fd, msg[1])
                os.fsync(fd)
                chunk = msg[2].get(b"chunk") if len(msg) > 2 else None
                if chunk:
                    conn.sendall(msgpack.packb({"ack": chunk.decode()}))


# --------------------------------------------------------------------------- LakeHub
def prepare(hub: B.Hub) -> tuple[httpx.Client, dict[str, Any]]:
    """Up, with a user, its two streams and a source: the user's API client and the source."""
    url, token = B.up_with_user(hub)
    c = httpx.Client(
        base_url=f"{url}{API}", timeout=60, headers={"Authorization": f"token {token}"}
    )
    for stream, tag in (("benchfw", "bench.fw"), ("benchhttp", "bench.http")):
        c.post("/streams", json={"name": stream, "tags": [tag]}).raise_for_status()
    r = c.post(
        "/sources",
        json={"name": "benchsrc", "tags": ["bench.*"], "max_message_bytes": 64 * 2**20},
    )
    r.raise_for_status()
    return c, r.json()


def lag(c: httpx.Client, stream: str, total: int, last_ack: float) -> float:
    def done() -> bool:
        return bool(c.get(f"/streams/{stream}").json()["moved_records"] >= total)

    if B.wait_until(done, 600, interval=0.05) is None:
        return float("nan")
    return time.monotonic() - last_ack


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--conns", type=int, default=4)
    ap.add_argument("--chunk", type=int, default=1000, help="records per chunk or request")
    ap.add_argument("--window", type=int, default=4, help="chunks in flight per connection")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    B.install_sigterm()
    started = time.perf_counter()
    info = B.host_info()
    info["other_load"] = B.other_load_note()
    root = B.bench_root("ingest")
    hub = B.bench_hub(root)
    problems: list[str] = []
    res: dict[str, list[float]] = {
        k: [] for k in ("lh_fw", "anchor_fw", "lh_http", "lag_fw", "lag_http")
    }
    record_bytes = len(packed_entries(1000)) / 1000
    anchor = c = lsock = None
    try:
        print(
            f"ingestion benchmark: {args.runs} runs of {args.seconds:.0f} s, {args.conns} "
            f"connections, {args.chunk} records of {record_bytes:.0f} bytes per chunk, "
            f"data in {root}",
            flush=True,
        )
        c, src = prepare(hub)
        rt = hub.runtime()
        fw_port, http_url = rt["ports"]["forward"], f"http://127.0.0.1:{rt['ports']['ingest_http']}"
        lsock = socket.create_server(("127.0.0.1", 0))
        anchor = mp.get_context("fork").Process(
            target=anchor_server, args=(lsock, str(root / "anchor.log")), daemon=True
        )
        anchor.start()
        anchor_port = lsock.getsockname()[1]
        totals = {"benchfw": 0, "benchhttp": 0}
        for r in range(args.runs):
            rate, last, count = run_forward(fw_port, src["key"], args)
            totals["benchfw"] += count
            res["lh_fw"].append(rate)
            res["lag_fw"].append(lag(c, "benchfw", totals["benchfw"], last))
            a_rate, _, _ = run_forward(anchor_port, None, args)
            res["anchor_fw"].append(a_rate)
            h_rate, h_last, h_count = run_http(f"{http_url}/bench.http", src["token"], args)
            res["lh_http"].append(h_rate)
            totals["benchhttp"] += h_count
            res["lag_http"].append(lag(c, "benchhttp", totals["benchhttp"], h_last))
            print(
                f"  run {r + 1}/{args.runs} (load {os.getloadavg()[0]:.2f}): Forward "
                f"{rate:9.0f} rec/s (lag {res['lag_fw'][-1]:.1f} s) | anchor {a_rate:9.0f} "
                f"rec/s | HTTP NDJSON {h_rate:9.0f} rec/s (lag {res['lag_http'][-1]:.1f} s)",
                flush=True,
            )
    finally:
        if anchor is not None:
            anchor.kill()
        for held in (c, lsock):
            if held is not None:
                held.close()
        problems += B.hub_down(hub, root, args.keep)
    cols = ["median", "min", "max"]
    print()
    print("PackedForward, acknowledged and fsynced: records/s")
    print(
        B.table(
            ["", "n", *cols],
            B.stats_rows(
                "LakeHub Forward",
                res["lh_fw"],
                "anchor: plain receiver, fsync per chunk",
                res["anchor_fw"],
                cols,
            ),
        )
    )
    print()
    print("HTTP NDJSON, acknowledged and fsynced: records/s (beside the same anchor)")
    print(
        B.table(
            ["", "n", *cols],
            B.stats_rows(
                "LakeHub HTTP NDJSON",
                res["lh_http"],
                "anchor: plain receiver, fsync per chunk",
                res["anchor_fw"],
                cols,
            ),
        )
    )
    print()
    print("lag from the last ack until every record is in the lake (Parquet written): seconds")
    print(
        B.table(
            ["", "n", *cols],
            [
                [label, str(len(res[key])), *(B.fmt(B.summary(res[key])[k]) for k in cols)]
                for label, key in (
                    ("after a Forward run", "lag_fw"),
                    ("after an HTTP run", "lag_http"),
                )
            ],
        )
    )
    info["args"] = vars(args)
    total = B.print_footer(started, info, problems, "problems")
    B.write_results(
        "ingest",
        {"host": info, "results": res, "record_bytes": record_bytes, "total_seconds": total},
    )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
