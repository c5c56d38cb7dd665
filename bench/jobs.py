"""Jobs: how late scheduled runs start, how many runs a minute the hub gets through, and what a
notebook job costs over the same work run by hand; each beside an anchor measured in the same
run on the same machine, in the hub's own ``datascience`` environment.

* **Lateness**: ``--runs`` jobs scheduled ``once``, their times spaced ``--spacing`` s apart;
  each run's script prints ``time.time()`` as its first statement, and lateness is that minus
  its planned time. Anchor: a bare loop in this process that sleeps until each time and starts
  the same script with the environment's interpreter (the least any scheduler can do).
* **Throughput**: one job (concurrency ``allow``) asked to run ``--burst`` times at once by hand;
  runs a minute from the first request until the last has succeeded. Anchor: the same script
  run ``--burst`` times, two at a time (the machine's cores), by a bare loop.
* **Notebook overhead**: a one-cell notebook as a job, from "run now" until the run says
  ``succeeded`` (polled every 50 ms), ``--repeat`` times; beside raw papermill on the same
  notebook (``python -m papermill``) and the same code as a script job and as a bare script.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

import benchlib as B

SCRIPT = "import time\nprint('STARTED', time.time(), flush=True)\n"
NOTEBOOK = {
    "nbformat": 4,
    "nbformat_minor": 5,
    "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3"}},
    "cells": [
        {
            "cell_type": "code",
            "metadata": {},
            "id": "a",
            "execution_count": None,
            "outputs": [],
            "source": "x = sum(range(10**6))\nprint(x)",
        },
    ],
}


def wait_runs(api: httpx.Client, name: str, n: int, timeout: float) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        runs = api.get(f"/jobs/{name}/runs", params={"limit": 1000}).json()
        ended = [r for r in runs if r["state"] not in ("planned", "running", "waiting")]
        if len(ended) >= n:
            return list(runs)
        if time.monotonic() > deadline:
            raise RuntimeError(f"{name}: {len(ended)} of {n} runs ended after {timeout:.0f} s")
        time.sleep(0.05)


def started_at(api: httpx.Client, name: str, run_id: int) -> float:
    log = api.get(f"/jobs/{name}/runs/{run_id}/log.txt").text
    found = [line for line in log.splitlines() if line.startswith("STARTED")]
    if not found:
        run = [r for r in api.get(f"/jobs/{name}/runs").json() if r["id"] == run_id]
        raise RuntimeError(f"{name}: run {run_id} printed no start: {run} {log[-1000:]}")
    return float(found[0].split()[1])


def lateness(
    api: httpx.Client, python: str, work: Path, runs: int, spacing: float
) -> dict[str, Any]:
    first = time.time() + 15 + runs * 0.05  # the jobs are made before their times come
    times = [first + i * spacing for i in range(runs)]
    for i, t in enumerate(times):
        at = datetime.fromtimestamp(t).astimezone().isoformat(timespec="milliseconds")
        body = {
            "name": f"late{i}",
            "code_name": "late.py",
            "code": SCRIPT,
            "schedule": "once",
            "expr": at,
        }
        api.post("/jobs", json=body).raise_for_status()
    lakehub = []
    for i, t in enumerate(times):
        (run,) = wait_runs(api, f"late{i}", 1, timeout=max(60.0, t - time.time() + 60))
        planned = datetime.fromisoformat(run["planned_at"]).timestamp()
        lakehub.append(started_at(api, f"late{i}", run["id"]) - planned)
        api.delete(f"/jobs/late{i}")
    # the anchor: sleep until each time, then start the script
    (work / "late.py").write_text(SCRIPT)
    bare, procs = [], []
    start = time.time() + 2
    for i in range(runs):
        t = start + i * spacing
        time.sleep(max(0.0, t - time.time()))
        p = subprocess.Popen([python, str(work / "late.py")], stdout=subprocess.PIPE, text=True)
        procs.append((t, p))
    for t, p in procs:
        out, _ = p.communicate(timeout=60)
        bare.append(float(out.split()[1]) - t)
    return {"lakehub": lakehub, "bare": bare}


def throughput(api: httpx.Client, python: str, work: Path, burst: int) -> dict[str, float]:
    body = {"name": "burst", "code_name": "burst.py", "code": SCRIPT, "concurrency": "allow"}
    api.post("/jobs", json=body).raise_for_status()
    t = time.perf_counter()
    for _ in range(burst):
        api.post("/jobs/burst/runs", json={}).raise_for_status()
    runs = wait_runs(api, "burst", burst, timeout=600)
    took = time.perf_counter() - t
    failed = sum(r["state"] != "succeeded" for r in runs)
    api.delete("/jobs/burst")
    (work / "burst.py").write_text(SCRIPT)
    t = time.perf_counter()
    pending = list(range(burst))
    while pending:
        batch = [
            subprocess.Popen([python, str(work / "burst.py")], stdout=subprocess.DEVNULL)
            for _ in pending[:2]
        ]
        for p in batch:
            p.wait(60)
        pending = pending[2:]
    bare = time.perf_counter() - t
    return {
        "lakehub_per_min": 60 * burst / took,
        "bare_per_min": 60 * burst / bare,
        "failed": failed,
    }


def overhead(api: httpx.Client, python: str, work: Path, repeat: int) -> dict[str, list[float]]:
    code = NOTEBOOK["cells"][0]["source"]  # type: ignore[index]
    nb = json.dumps(NOTEBOOK)
    (work / "nb.ipynb").write_text(nb)
    (work / "same.py").write_text(code)
    api.post("/jobs", json={"name": "nb", "code_name": "nb.ipynb", "code": nb}).raise_for_status()
    api.post("/jobs", json={"name": "py", "code_name": "same.py", "code": code}).raise_for_status()
    out: dict[str, list[float]] = {
        "notebook job": [],
        "raw papermill": [],
        "script job": [],
        "bare script": [],
    }
    for i in range(repeat):
        for name, key in (("nb", "notebook job"), ("py", "script job")):
            t = time.perf_counter()
            run = api.post(f"/jobs/{name}/runs", json={}).json()
            runs = wait_runs(api, name, i + 1, timeout=300)
            assert next(r for r in runs if r["id"] == run["id"])["state"] == "succeeded"
            out[key].append(time.perf_counter() - t)
        for argv, key in (
            (
                [
                    python,
                    "-m",
                    "papermill",
                    "-k",
                    "python3",
                    "--no-progress-bar",
                    "nb.ipynb",
                    "out.ipynb",
                ],
                "raw papermill",
            ),
            ([python, "same.py"], "bare script"),
        ):
            t = time.perf_counter()
            subprocess.run(argv, cwd=work, check=True, capture_output=True, timeout=300)
            out[key].append(time.perf_counter() - t)
    api.delete("/jobs/nb")
    api.delete("/jobs/py")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=200, help="scheduled runs for lateness")
    ap.add_argument("--spacing", type=float, default=0.25, help="seconds between their times")
    ap.add_argument("--burst", type=int, default=60, help="runs asked for at once")
    ap.add_argument("--repeat", type=int, default=5, help="notebook and script runs each")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    B.install_sigterm()
    started = time.perf_counter()
    info: dict[str, Any] = B.host_info()
    info["other_load"] = B.other_load_note()
    root = B.bench_root("jobs")
    hub = B.bench_hub(root)
    problems: list[str] = []
    results: dict[str, Any] = {"args": vars(args), "host": info}
    try:
        url, token = B.up_with_user(hub)
        hub.wait_environments("datascience")
        python = str(hub.data_dir / "envs" / "datascience" / "bin" / "python")
        work = root / "work"
        work.mkdir()
        with httpx.Client(
            base_url=f"{url}{B.API}", timeout=60, headers={"Authorization": f"token {token}"}
        ) as api:
            late = lateness(api, python, work, args.runs, args.spacing)
            results["lateness"] = late
            rows = [
                [
                    k,
                    B.fmt(B.percentile(v, 0.5) * 1000, " ms", 0),
                    B.fmt(B.percentile(v, 0.99) * 1000, " ms", 0),
                    str(len(v)),
                ]
                for k, v in (
                    ("LakeHub scheduler", late["lakehub"]),
                    ("bare sleep-and-start loop", late["bare"]),
                )
            ]
            print(f"\nstart lateness ({args.runs} runs {args.spacing} s apart; goal p99 <= 1 s)")
            print(B.table(["", "p50", "p99", "runs"], rows))
            burst = throughput(api, python, work, args.burst)
            results["throughput"] = burst
            per_min, bare_per_min = burst["lakehub_per_min"], burst["bare_per_min"]
            print(
                f"\nthroughput ({args.burst} runs asked for at once): LakeHub {per_min:.0f} "
                f"runs/min, a bare loop two at a time {bare_per_min:.0f} "
                f"({B.ratio(per_min, bare_per_min):.2f}x); {burst['failed']} failed"
            )
            if burst["failed"]:
                problems.append(f"{burst['failed']} burst runs did not succeed")
            over = overhead(api, python, work, args.repeat)
            results["overhead"] = over
            med = {k: B.percentile(v, 0.5) for k, v in over.items()}
            print(f"\nnotebook overhead (median of {args.repeat}; goal: <= 1.2x raw papermill)")
            print(B.table(["", "seconds"], [[k, B.fmt(v, " s")] for k, v in med.items()]))
            nb = B.ratio(med["notebook job"], med["raw papermill"])
            py = B.ratio(med["script job"], med["bare script"])
            print(f"  notebook job / raw papermill: {nb:.2f}x; script job / bare script: {py:.2f}x")
    finally:
        problems += B.hub_down(hub, root, keep=True)
        problems += B.remove_accounts(root)  # the user's account, made for its jobs
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
        path = B.write_results("jobs", results)
        print(f"results: {path}")
        B.print_footer(started, info, problems, "problems")


if __name__ == "__main__":
    sys.exit(main())
