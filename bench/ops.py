"""Monitoring: how soon after ``lakehub up`` the store holds a sample, how much memory the
monitoring stack takes, and how fast the overview dashboard answers over 7 days of data.

* **First sample**: ``lakehub up --detach`` returns when the hub is ready; from that moment,
  how long until the store has a sample of the control plane's figures (read with its export
  API, which sees a sample as soon as it is stored). Anchor, same run: the same
  ``victoria-metrics`` binary started bare with the hub's own scrape configuration, from its
  start to its first stored sample of the same page.
* **Memory**: the resident memory of the store's processes (``metrics``, ``metrics-agent``) after
  the dashboard queries below (the goal is the anchor; the bare store's, holding a few samples
  with the binary's default flags, is printed beside it).
* **Dashboard over 7 days**: 7 days of samples at 15 s for the series the overview's panels read
  (components, users, servers, clusters, streams: some 60 series, 2.4 million samples) imported
  into the hub's store; then ``GET /api/ops/dashboards/overview?hours=168`` on the control plane
  (direct, not through the proxy; http.client over a kept-alive connection, the answer decoded
  with orjson) against the same panels' queries sent straight to the store
  at once (the same step, 8 threads, http.client over kept-alive connections, each answer
  decoded), alternating, ``--runs`` times each; medians. The control plane asks the store for
  all panels in one query (a ``union`` of them, cut apart again); that one query sent straight
  to the store is printed too, as the control plane's own cost over the store.

Goals: first sample <= 1 s after up, <= 100 MB for the stack, dashboard <= 1.2x the direct
queries.

    .venv/bin/python bench/ops.py [--runs 15] [--ups 3] [--keep]
"""

from __future__ import annotations

import argparse
import http.client
import os
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib as B  # noqa: E402
from hubs import free_port  # noqa: E402

DAY = 86400
STEP = 15  # seconds between the imported samples


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def stored(store: str, metric: str) -> bool:
    try:
        r = httpx.get(f"{store}/api/v1/export", params={"match[]": metric}, timeout=5)
    except httpx.TransportError:  # not listening yet
        return False
    return r.status_code == 200 and bool(r.text.strip())


def backfill(store: str, end: float) -> int:
    """7 days of the overview's series at 15 s into the store; how many samples."""
    series: list[tuple[str, str]] = []
    for comp in ("lake", "proxy", "hub", "api", "gateway", "ingest", "metrics", "warm"):
        series.append(("lakehub_component_up", f'component="{comp}",instance="api",job="api"'))
        series.append(("lakehub_component_restarts_total", f'component="{comp}"'))
    for comp in ("api", "hub", "lake", "ingest", "metrics"):
        series.append(("up", f'component="{comp}",instance="{comp}",job="{comp}"'))
        series.append(("process_resident_memory_bytes", f'component="{comp}"'))
    for u in range(10):
        series.append(("lakehub_server_memory_limit_bytes", f'user="u{u}",server="default"'))
        series.append(("lakehub_stream_received_records_total", f'user="u{u}",stream="s{u}"'))
    for kind in ("dask", "spark"):
        series.append(("lakehub_clusters", f'user="u1",kind="{kind}"'))
    for name in (
        "lakehub_users_active",
        "lakehub_ingest_buffer_bytes",
        "lakehub_disk_free_bytes",
        "lakehub_disk_size_bytes",
        "lakehub_quota_used_bytes",
    ):
        series.append((name, 'component="api"'))
    start = int(end - 7 * DAY)
    total = 0
    with httpx.Client(timeout=300) as c:
        for chunk_start in range(start, int(end), DAY // 4):
            lines = []
            for t in range(chunk_start, min(chunk_start + DAY // 4, int(end)), STEP):
                for i, (name, labels) in enumerate(series):
                    value = (
                        (t - start) // STEP if name.endswith("_total") else 1 + (t // 3600 + i) % 7
                    )
                    lines.append(f"{name}{{{labels}}} {value} {t * 1000}")
            total += len(lines)
            r = c.post(f"{store}/api/v1/import/prometheus", content="\n".join(lines).encode())
            r.raise_for_status()
        c.get(f"{store}/internal/force_flush")
    return total


_local = threading.local()


def _get(port: int, url: str, headers: dict[str, str] | None = None) -> bytes:
    """GET over this thread's kept-alive connection to ``port``."""
    conns = _local.__dict__.setdefault("conns", {})
    conn = conns.get(port)
    if conn is None:
        conn = conns[port] = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    conn.request("GET", url, headers={"Accept-Encoding": "identity", **(headers or {})})
    r = conn.getresponse()
    body = r.read()
    assert r.status == 200, body[:300]
    return body


def direct(
    pool: ThreadPoolExecutor, port: int, exprs: list[str], start: float, end: float, step: float
) -> float:
    """The panels' queries straight to the store, 8 at once over kept-alive connections (the
    lightest client: http.client, one connection per thread), each answer decoded: seconds."""
    t0 = time.perf_counter()
    urls = [
        "/api/v1/query_range?"
        + urlencode({"query": e, "start": start, "end": end, "step": f"{step:g}s"})
        for e in exprs
    ]
    for body in pool.map(lambda u: _get(port, u), urls):
        orjson.loads(body)
    return time.perf_counter() - t0


def bare_first_sample(config: Path, root: Path) -> tuple[float, float, subprocess.Popen[bytes]]:
    """A bare store started with the hub's scrape configuration: seconds from its start to its
    first stored sample, its RSS then (MB), the process."""
    port = free_port()
    proc = subprocess.Popen(
        [
            shutil.which("victoria-metrics") or "victoria-metrics",
            f"-storageDataPath={root}",
            f"-httpListenAddr=127.0.0.1:{port}",
            f"-promscrape.config={config}",
            "-loggerLevel=ERROR",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    t0 = time.perf_counter()
    url = f"http://127.0.0.1:{port}"
    B.wait_until(lambda: stored(url, "lakehub_component_up"), 60, interval=0.02)
    return time.perf_counter() - t0, rss_mb(proc.pid), proc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--ups", type=int, default=3)
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    B.install_sigterm()
    started = time.perf_counter()
    info: dict[str, Any] = B.host_info()
    info["other_load"] = B.other_load_note()
    root = B.bench_root("ops")
    hub = B.bench_hub(root)
    problems: list[str] = []
    results: dict[str, Any] = {"host": info}
    try:
        firsts, bares = [], []
        for i in range(args.ups):
            if i:
                hub.down()
            hub.up(timeout=900)
            t_up = time.perf_counter()
            rt = hub.runtime()
            store = f"http://127.0.0.1:{rt['ports']['metrics']}"
            B.wait_until(lambda s=store: stored(s, "lakehub_component_up"), 60, interval=0.02)
            firsts.append(time.perf_counter() - t_up)
            config = hub.data_dir / "metrics" / "scrape.json"
            took, bare_mb, bare = bare_first_sample(config, root / f"bare{i}")
            bares.append(took)
            B.kill_groups([bare])
        results["first_sample"] = {"lakehub": firsts, "bare": bares}
        # 7 days of data, then the overview through the control plane and straight to the store
        end = time.time()
        samples = backfill(store, end)
        token = hub.service_token()
        api, api_port = "/services/lakehub/api/ops", rt["ports"]["api"]
        auth = {"Authorization": f"token {token}"}
        from lakehub.server.ops.dashboards import load, step_for
        from lakehub.server.ops.victoria import union_of

        board = load()["overview"]
        exprs = [p.expr for p in board.panels]
        lakehub_s, direct_s, union_s = [], [], []
        pool = ThreadPoolExecutor(8)
        step = step_for(7 * DAY, 15)
        port = rt["ports"]["metrics"]
        for run in range(args.runs):
            t_end = time.time()
            order = ("lakehub", "direct") if run % 2 == 0 else ("direct", "lakehub")
            for who in order:
                if who == "lakehub":  # the same client, its answer decoded the same way
                    query = urlencode({"hours": 168, "end": t_end})
                    t0 = time.perf_counter()
                    body = _get(api_port, f"{api}/dashboards/overview?{query}", auth)
                    answer = orjson.loads(body)
                    lakehub_s.append(time.perf_counter() - t0)
                    drawn = sum(len(p["series"]) for p in answer["panels"])
                else:
                    direct_s.append(direct(pool, port, exprs, t_end - 7 * DAY, t_end, step))
        for _ in range(args.runs):  # after, not between: the anchor's runs are as they were
            t_end = time.time()
            one = [union_of(exprs)]
            union_s.append(direct(pool, port, one, t_end - 7 * DAY, t_end, step))
        pool.shutdown()
        pids = [
            c["pid"] for n, c in rt["components"].items() if n.startswith("metrics") and c["pid"]
        ]
        stack = sum(rss_mb(p) for p in pids)
        results |= {
            "samples": samples,
            "dashboard": {"lakehub": lakehub_s, "direct": direct_s, "union": union_s},
            "stack_mb": stack,
            "series_drawn": drawn,
        }
        f50, b50 = B.percentile(firsts, 0.5), B.percentile(bares, 0.5)
        l50, d50 = B.percentile(lakehub_s, 0.5), B.percentile(direct_s, 0.5)
        print(
            f"monitoring, {args.ups} starts, {args.runs} dashboard runs; {samples:,} samples "
            f"over 7 days imported, {drawn} series drawn by the overview"
        )
        print(
            B.table(
                ["measure", "LakeHub (median)", "anchor (median)", "ratio", "goal"],
                [
                    [
                        "first stored sample after up",
                        B.fmt(f50, " s"),
                        f"bare store from its start: {B.fmt(b50, ' s')}",
                        B.fmt(B.ratio(f50, b50), "x"),
                        "<= 1 s",
                    ],
                    [
                        "overview, 7 days at 15 s",
                        B.fmt(l50 * 1000, " ms", 0),
                        f"its queries direct: {B.fmt(d50 * 1000, ' ms', 0)}",
                        B.fmt(B.ratio(l50, d50), "x"),
                        "<= 1.2x",
                    ],
                    [
                        "monitoring stack memory (RSS)",
                        B.fmt(stack, " MB", 0),
                        f"bare store, a few samples: {B.fmt(bare_mb, ' MB', 0)}",
                        "",
                        "<= 100 MB",
                    ],
                ],
            )
        )
        u50 = B.percentile(union_s, 0.5)
        print(
            f"p90: overview {B.fmt(B.percentile(lakehub_s, 0.9) * 1000, ' ms', 0)}, direct "
            f"{B.fmt(B.percentile(direct_s, 0.9) * 1000, ' ms', 0)}; the control plane's one "
            f"query sent straight to the store: {B.fmt(u50 * 1000, ' ms', 1)} (median), so the "
            f"control plane adds {B.fmt((l50 - u50) * 1000, ' ms', 1)} "
            f"({B.fmt(B.ratio(l50, u50), 'x')} of it)"
        )
    finally:
        problems += B.hub_down(hub, root, args.keep)
    B.write_results("ops", results)
    B.print_footer(started, info, problems, "problems")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    os.umask(0o022)
    main()
