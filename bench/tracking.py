"""Benchmark: experiment tracking. LakeHub's MLflow API against a plain ``mlflow server`` (the same
MLflow version as the client, SQLite, one worker, no job runner) in the same run, both driven by
MLflow's own client. LakeHub is reached as notebooks, jobs and clusters reach it (the control
plane's own port); ``log_metric`` is also timed through the front door, as from outside.

Measured on each side, sides alternating which goes first in every repetition:
  * ``log_batch``: one run, ``--batches`` calls of 1,000 metrics each; metrics/s;
  * ``log_metric`` one at a time: ``--singles`` calls; calls/s, p50 and p99 latency;
  * search at ``--search-runs`` runs (each with 3 metrics and 2 params, made first: their making
    is timed too, 4 client threads): ``search_runs`` of 50 sorted by a metric, and with a metric
    filter, 30 times each; p50 and p95. LakeHub's portal page of those runs (sorted by the
    metric, its columns picked on the server) is timed the same way (the goal: p95 <= 300 ms);
  * memory: the control plane's resident size before and after (LakeHub serves MLflow's API
    inside it), against the ``mlflow server``'s processes after.

    .venv/bin/python bench/tracking.py [--runs 3] [--search-runs 10000] [--keep]
    .venv/bin/python bench/tracking.py --runs 1 --search-runs 500     # a quick check
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).parent))
import benchlib as B  # noqa: E402

MLFLOW = "3.17.2"  # the client's version (mlflow-skinny in the project's venv)
PREFIX = "/services/lakehub/"
SEARCHES = 30


def rss_kib(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def pids_of(marker: str, *words: str) -> list[int]:
    return [pid for pid, cmd in B.leftovers(marker) if all(w in cmd for w in words)]


@contextmanager
def as_side(uri: str, token: str | None) -> Iterator[Any]:
    """MLflow's client for one side (the token is read from the environment per request)."""
    from mlflow import MlflowClient

    if token:
        os.environ["MLFLOW_TRACKING_TOKEN"] = token
    else:
        os.environ.pop("MLFLOW_TRACKING_TOKEN", None)
    try:
        yield MlflowClient(tracking_uri=uri)
    finally:
        os.environ.pop("MLFLOW_TRACKING_TOKEN", None)


def timed(fn: Callable[[], Any]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def batch_rate(client: Any, exp: str, batches: int) -> float:
    from mlflow.entities import Metric

    run = client.create_run(exp).info.run_id
    now = int(time.time() * 1000)
    took = 0.0
    for b in range(batches):
        metrics = [Metric(f"m{i % 10}", i * 0.5, now, b * 100 + i // 10) for i in range(1000)]
        t = time.perf_counter()
        client.log_batch(run, metrics=metrics)
        took += time.perf_counter() - t
    return batches * 1000 / took


def singles(client: Any, exp: str, n: int) -> list[float]:
    run = client.create_run(exp).info.run_id
    took = []
    for i in range(n):
        t = time.perf_counter()
        client.log_metric(run, "loss", 1 / (i + 1), step=i)
        took.append(time.perf_counter() - t)
    return took


def make_runs(client: Any, n: int) -> tuple[str, float]:
    from mlflow.entities import Metric, Param

    exp = client.create_experiment(f"search{time.monotonic_ns()}")

    def one(i: int) -> None:
        run = client.create_run(exp, run_name=f"r{i}").info.run_id
        now = int(time.time() * 1000)
        client.log_batch(
            run,
            metrics=[Metric(f"m{k}", (i * 7919 + k) % 1000 / 1000, now, 0) for k in range(3)],
            params=[Param("depth", str(i % 9)), Param("lr", str(i % 5))],
        )

    t = time.perf_counter()
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(one, range(n)))
    return exp, time.perf_counter() - t


def searches(client: Any, exp: str) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"sorted": [], "filtered": []}
    for _ in range(SEARCHES):
        out["sorted"].append(
            timed(lambda: client.search_runs([exp], order_by=["metrics.m1 DESC"], max_results=50))
        )
        out["filtered"].append(
            timed(
                lambda: client.search_runs(
                    [exp], "metrics.m2 > 0.5", order_by=["metrics.m1 DESC"], max_results=50
                )
            )
        )
    return out


def portal_page(front: str, cookie: tuple[str, str], exp: str) -> list[float]:
    took = []
    with httpx.Client(base_url=front, cookies=dict([cookie]), timeout=120) as c:
        for _ in range(SEARCHES):
            t = time.perf_counter()
            r = c.get(f"{PREFIX}experiments/{exp}", params={"sort": "metrics.m1", "desc": "true"})
            took.append(time.perf_counter() - t)
            if r.status_code != 200 or "r" not in r.text:
                raise RuntimeError(f"the runs page answered {r.status_code}")
    return took


def start_anchor(root: Path, marker: str) -> tuple[str, subprocess.Popen[bytes]]:
    venv = root / "mlflow-venv"
    uv = str(Path(sys.executable).parent / "uv")
    subprocess.run([uv, "venv", "-q", "--python", sys.executable, str(venv)], check=True)
    subprocess.run(
        [uv, "pip", "install", "-q", "--python", str(venv / "bin" / "python"), f"mlflow=={MLFLOW}"],
        check=True,
    )
    port = B.free_port()
    env = {
        **os.environ,
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "BENCH_MARK": marker,
    }
    proc = subprocess.Popen(
        [
            str(venv / "bin" / "mlflow"),
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--backend-store-uri",
            f"sqlite:///{root}/mlflow.db",
            "--artifacts-destination",
            str(root / "mlartifacts"),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(root / "mlflow.log", "wb"),  # noqa: SIM115
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    if not B.wait_until(lambda: B.healthy(f"{url}/health"), 180, 0.2):
        raise RuntimeError(f"mlflow server did not answer; see {root / 'mlflow.log'}")
    return url, proc


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--runs", type=int, default=3, help="repetitions of the logging measures")
    ap.add_argument("--batches", type=int, default=20, help="log_batch calls of 1,000 metrics")
    ap.add_argument("--singles", type=int, default=300, help="log_metric calls")
    ap.add_argument("--search-runs", type=int, default=10_000, help="runs to search among")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = ap.parse_args()
    if min(args.runs, args.batches, args.singles, args.search_runs) < 1:
        ap.error("every count must be >= 1")
    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
    B.install_sigterm()
    started = time.perf_counter()
    root = B.bench_root("tracking")
    marker = str(root)
    info = B.host_info()
    info["other_load"] = B.other_load_note()
    hub = B.bench_hub(root)
    problems: list[str] = []
    res: dict[str, Any] = {
        "benchmark": "tracking",
        "host": info,
        "mlflow": MLFLOW,
        "args": vars(args),
    }
    anchor: subprocess.Popen[bytes] | None = None
    sides: dict[str, dict[str, Any]] = {"LakeHub": {}, f"mlflow server {MLFLOW}": {}}
    try:
        print(f"tracking benchmark: data in {root}", flush=True)
        front, token = B.up_with_user(hub)
        plane = pids_of(marker, "lakehub.server.web.app")
        res["control_plane_rss_kib_before"] = rss_kib(plane)
        anchor_url, anchor = start_anchor(root, marker)
        # as notebooks, jobs and clusters reach it: the control plane directly, not the proxy
        direct = f"http://127.0.0.1:{hub.runtime()['ports']['api']}/services/lakehub/mlflow"
        ends = {
            "LakeHub": (direct, token),
            f"mlflow server {MLFLOW}": (anchor_url, None),
        }
        for label, (uri, tok) in ends.items():
            with as_side(uri, tok) as c:
                sides[label]["exp"] = c.create_experiment(f"logging{time.monotonic_ns()}")
                sides[label].update(batch=[], single=[])
        for i in range(args.runs):
            order = list(ends.items())[:: 1 if i % 2 else -1]
            for label, (uri, tok) in order:
                with as_side(uri, tok) as c:
                    exp = sides[label]["exp"]
                    sides[label]["batch"].append(batch_rate(c, exp, args.batches))
                    sides[label]["single"] += singles(c, exp, args.singles)
            print(f"  logging {i + 1}/{args.runs} done", flush=True)
        with as_side(f"{front}/services/lakehub/mlflow", token) as c:  # from outside the hub
            sides["LakeHub"]["front_door_single"] = singles(
                c, sides["LakeHub"]["exp"], args.singles
            )
        for label, (uri, tok) in ends.items():
            with as_side(uri, tok) as c:
                exp, took = make_runs(c, args.search_runs)
                sides[label]["make_runs_s"] = took
                print(f"  {label}: {args.search_runs} runs made in {took:.0f} s", flush=True)
                sides[label]["search"] = searches(c, exp)
                sides[label]["search_exp"] = exp
        from lakehub.server.vault import Vault
        from lakehub.server.web.auth import TOKEN_COOKIE

        cookie = (TOKEN_COOKIE, Vault(hub.data_dir / "state").encrypt(token))
        sides["LakeHub"]["page"] = portal_page(front, cookie, sides["LakeHub"]["search_exp"])
        res["control_plane_rss_kib_after"] = rss_kib(plane)
        res["anchor_rss_kib_after"] = rss_kib(pids_of(marker, "mlflow") or [anchor.pid])
    finally:
        if anchor is not None:
            B.kill_groups([anchor])
        problems += B.hub_down(hub, root, args.keep)
    res["sides"] = sides
    lake, plain = sides["LakeHub"], sides[f"mlflow server {MLFLOW}"]

    def ms(xs: list[float], q: float) -> float:
        return B.percentile(xs, q) * 1000

    rows = []
    for what, key, q in (
        ("search 50 sorted", "sorted", 0.5),
        ("", "sorted", 0.95),
        ("search 50 filtered", "filtered", 0.5),
        ("", "filtered", 0.95),
    ):
        a, b = ms(lake["search"][key], q), ms(plain["search"][key], q)
        rows.append(
            [
                f"{what or '  '} {'p50' if q == 0.5 else 'p95'} (ms)",
                B.fmt(a, digits=1),
                B.fmt(b, digits=1),
                B.fmt(B.ratio(a, b)) + "x (lower is better)",
            ]
        )
    br_a, br_b = statistics.median(lake["batch"]), statistics.median(plain["batch"])
    sr_a, sr_b = 1 / statistics.median(lake["single"]), 1 / statistics.median(plain["single"])
    head = [
        [
            "log_batch, metrics/s (median)",
            f"{br_a:,.0f}",
            f"{br_b:,.0f}",
            B.fmt(B.ratio(br_a, br_b)) + "x",
        ],
        [
            "log_metric, calls/s (1/median)",
            f"{sr_a:,.0f}",
            f"{sr_b:,.0f}",
            B.fmt(B.ratio(sr_a, sr_b)) + "x",
        ],
        [
            "log_metric through the front door, calls/s",
            f"{1 / statistics.median(lake['front_door_single']):,.0f}",
            "-",
            "",
        ],
        [
            "log_metric p99 (ms)",
            B.fmt(ms(lake["single"], 0.99), digits=1),
            B.fmt(ms(plain["single"], 0.99), digits=1),
            "",
        ],
        [
            f"making {args.search_runs} runs (s)",
            B.fmt(lake["make_runs_s"], digits=0),
            B.fmt(plain["make_runs_s"], digits=0),
            "",
        ],
    ]
    page = lake.get("page", [])
    tail = [
        ["portal runs page p50 (ms)", B.fmt(ms(page, 0.5), digits=1), "-", "goal p95 <= 300 ms"],
        ["portal runs page p95 (ms)", B.fmt(ms(page, 0.95), digits=1), "-", ""],
        [
            "memory (MiB): control plane before / after; mlflow server after",
            f"{res['control_plane_rss_kib_before'] // 1024} / "
            f"{res['control_plane_rss_kib_after'] // 1024}",
            f"{res['anchor_rss_kib_after'] // 1024}",
            "",
        ],
    ]
    print()
    print(
        f"{args.search_runs} runs searched; logging repeated {args.runs}x "
        f"({args.batches} batches of 1,000, {args.singles} single calls)"
    )
    print(
        B.table(
            ["measure", "LakeHub", f"mlflow server {MLFLOW}", "LakeHub / anchor"],
            head + rows + tail,
        )
    )
    B.write_results("tracking", res)
    B.print_footer(started, info, problems, "problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
