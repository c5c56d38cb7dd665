"""Benchmark: how long ``lakehub up --detach`` takes on an existing data directory.

LakeHub: launch ``lakehub up --detach --data-dir D --port P`` (LAKEHUB_LAKE_PORT=0) and time until
it returns 0 with every component healthy; ``lakehub down`` between runs (not timed). The very
first start builds the notebook environment and is reported on its own line.

Anchor, same run: the same four programs started bare and in parallel by this script:
``weed mini`` with the product's flags and an s3.config file, ``traefik`` with LakeHub's static
configuration, ``jupyterhub`` with a minimal config (dummy authenticator, its ``traefik_file``
proxy pointed at that Traefik: the same topology as LakeHub) and a trivial uvicorn FastAPI app,
timed until each answers its health URL. Everything is killed by process group after each run
and the benchmark checks that no process is left.

LakeHub and anchor runs alternate, so a change in machine load hits both alike.

    .venv/bin/python bench/up.py [--runs 5] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import secrets
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib as B  # noqa: E402

GOAL_S = 5.0
POLL = 0.05  # health polling interval, the same for LakeHub's breakdown and the anchor
READY_TIMEOUT = 120.0
FIRST_TIMEOUT = 900.0
COMPONENTS = ("lake", "proxy", "hub", "api")

ANCHOR_APP = """\
from fastapi import FastAPI

app = FastAPI()


@app.get("/api/health")
def health() -> dict[str, str]:
    return {"status": "ok"}
"""

ANCHOR_HUB_CONFIG = """\
c = get_config()  # noqa: F821
c.JupyterHub.bind_url = "http://127.0.0.1:{proxy}/"
c.JupyterHub.hub_bind_url = "http://127.0.0.1:{hub}"
c.JupyterHub.proxy_class = "traefik_file"
c.TraefikFileProviderProxy.should_start = False
c.TraefikFileProviderProxy.traefik_api_url = "http://127.0.0.1:{proxy_api}"
c.TraefikFileProviderProxy.traefik_api_username = "bench"
c.TraefikFileProviderProxy.traefik_api_password = "{token}"
c.TraefikFileProviderProxy.dynamic_config_file = "{dir}/routes/routes.toml"
c.JupyterHub.authenticator_class = "dummy"
c.Authenticator.allow_all = True
c.JupyterHub.db_url = "sqlite:///{dir}/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = "{dir}/jupyterhub_cookie_secret"
c.JupyterHub.pid_file = "{dir}/jupyterhub.pid"
"""


# ---------------------------------------------------------------------------------- LakeHub
class LakeHub:
    def __init__(self, root: Path) -> None:
        self.hub = B.bench_hub(root, "lakehub/data")
        self.data, self.port, self.env = self.hub.data_dir, self.hub.port, self.hub.env
        self.out_dir = root / "lakehub"
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.marker = str(root)

    def start(self, label: str, timeout: float) -> dict[str, Any]:
        """One timed ``lakehub up --detach``; returns seconds and a breakdown."""
        sampler = Sampler(self.data / "run" / "runtime.json")
        out = open(self.out_dir / f"up-{label}.out", "wb")  # noqa: SIM115
        argv = [
            str(B.VENV_BIN / "lakehub"),
            "up",
            "--detach",
            "--data-dir",
            str(self.data),
            "--port",
            str(self.port),
        ]
        ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        wall0 = time.time()
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=self.env
        )
        sampler.begin(t0, wall0)
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = None
        elapsed = time.perf_counter() - t0
        # ready is a login; the rest settles after (each component answered once)
        settled = code == 0 and B.wait_until(lambda: (self.runtime() or {}).get("settled"), 180)
        all_healthy = time.perf_counter() - t0 if settled else None
        ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        per_pid = B.cpu_by_process(self.marker)
        cli_cpu = (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)
        cpu = sum(per_pid.values()) + cli_cpu
        out.close()
        sampler.finish()
        result: dict[str, Any] = {
            "seconds": elapsed,
            "all_healthy_seconds": all_healthy,
            "exit": code,
            "wall_start": wall0,
            "cpu_seconds": cpu,
        }
        rt = self.runtime()
        forked = B.proc_start_wall(rt["supervisor_pid"]) if rt else None
        checks = {}
        if rt:
            for name, comp in rt.get("components", {}).items():
                checks[name] = B.http_status(comp["health_url"], 2.0)
        result["health_after"] = checks
        result["ok"] = (
            bool(settled)
            and bool(checks)
            and all(v is not None and v < 500 for v in checks.values())
        )
        if not result["ok"]:
            result["output"] = (
                f"exit {code}, health {checks}\n"
                + (self.out_dir / f"up-{label}.out").read_text(errors="replace")[-2000:]
            )
        result["breakdown"] = self.breakdown(wall0, sampler)
        names = {c["pid"]: n for n, c in (rt or {}).get("components", {}).items()}
        if rt:
            names[rt["supervisor_pid"]] = "supervisor (2nd bootstrap)"
        by_proc = {"lakehub up CLI (1st bootstrap)": cli_cpu}
        for pid, secs in per_pid.items():
            key = names.get(pid, "other")
            by_proc[key] = by_proc.get(key, 0.0) + secs
        result["cpu_by_process"] = by_proc
        if forked:
            result["breakdown"]["supervisor forked (CLI bootstrap done)"] = forked - wall0
        return result

    def runtime(self) -> dict[str, Any] | None:
        try:
            data: dict[str, Any] = json.loads((self.data / "run" / "runtime.json").read_text())
            return data
        except (OSError, ValueError):
            return None

    def breakdown(self, wall0: float, sampler: Sampler) -> dict[str, float]:
        """Seconds after launch at which each step happened (from logs and the sampler)."""
        b: dict[str, float] = {}
        if sampler.runtime_seen is not None:
            b["runtime.json written (2nd bootstrap done)"] = sampler.runtime_seen
        for ts, _, msg in B.py_events(self.data / "logs" / "supervisor.log"):
            if ts >= wall0 - 0.01 and msg.startswith("started "):
                name = msg.split()[1]
                b.setdefault(f"supervisor started {name}", ts - wall0)
        for ts, _, msg in B.jupyter_events(self.data / "logs" / "hub.log"):
            if ts >= wall0 - 0.01 and msg.startswith("Running JupyterHub version"):
                b.setdefault("hub: 'Running JupyterHub' logged", ts - wall0)
        for name, t in sampler.first_healthy.items():
            b[f"{name} healthy"] = t
        return b

    def down(self) -> list[str]:
        return self.hub.down() + B.reap(self.marker)


class Sampler(threading.Thread):
    """Watches runtime.json and probes each component's health URL every POLL seconds."""

    def __init__(self, runtime_file: Path) -> None:
        super().__init__(daemon=True)
        self.runtime_file = runtime_file
        self.stop = threading.Event()
        self.runtime_seen: float | None = None
        self.first_healthy: dict[str, float] = {}

    def begin(self, t0: float, wall0: float) -> None:
        self.t0, self.wall0 = t0, wall0
        self.start()

    def finish(self) -> None:
        self.stop.set()
        self.join(timeout=5)

    def run(self) -> None:
        urls: dict[str, str] = {}
        deadline = time.monotonic() + FIRST_TIMEOUT
        while not self.stop.is_set() and time.monotonic() < deadline:
            try:
                if self.runtime_file.stat().st_mtime >= self.wall0 - 0.01:
                    data = json.loads(self.runtime_file.read_text())
                    if self.runtime_seen is None:
                        self.runtime_seen = time.perf_counter() - self.t0
                    urls = {n: c["health_url"] for n, c in data.get("components", {}).items()}
            except (OSError, ValueError):
                pass
            for name, url in urls.items():
                if name not in self.first_healthy and B.healthy(url, 0.5):
                    self.first_healthy[name] = time.perf_counter() - self.t0
            self.stop.wait(POLL)


# ---------------------------------------------------------------------------------- anchor
class Anchor:
    """The same components, started bare and in parallel."""

    def __init__(self, root: Path, marker: str) -> None:
        self.dir = root / "anchor"
        self.marker = marker
        for sub in ("lake", "hub", "api", "hub/routes"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        (self.dir / "api" / "benchapp.py").write_text(ANCHOR_APP)
        ident = {
            "name": "admin",
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            "credentials": [
                {
                    "accessKey": "benchadmin" + secrets.token_hex(4),
                    "secretKey": secrets.token_urlsafe(30),
                }
            ],
        }
        cfg = self.dir / "s3.json"
        cfg.write_text(json.dumps({"identities": [ident]}))
        cfg.chmod(0o600)
        self.token = secrets.token_hex(32)

    def _traefik(self, p: dict[str, int]) -> Path:
        """Traefik's static configuration, as LakeHub writes it (routes kept by the hub)."""
        from lakehub.server.front_door import traefik

        path = self.dir / "traefik.yaml"
        routes = self.dir / "hub" / "routes"
        path.write_text(json.dumps(traefik("127.0.0.1", p["proxy"], p["proxy_api"], routes)))
        return path

    def start(self, label: str, timeout: float = READY_TIMEOUT) -> dict[str, Any]:
        p = {
            n: B.free_port()
            for n in (
                "s3",
                "s3_grpc",
                "master",
                "master_grpc",
                "volume",
                "volume_grpc",
                "filer",
                "filer_grpc",
                "lake_admin",
                "lake_admin_grpc",
                "proxy",
                "proxy_api",
                "hub",
                "api",
            )
        }
        (self.dir / "hub" / "jupyterhub_config.py").write_text(
            ANCHOR_HUB_CONFIG.format(
                proxy=p["proxy"],
                hub=p["hub"],
                proxy_api=p["proxy_api"],
                token=self.token,
                dir=self.dir / "hub",
            )
        )
        env = {**os.environ, "BENCH_MARK": self.marker}
        from lakehub.server.lake.seaweedfs import SeaweedFS

        # the product's own command line (data in DIR/lake, identities in DIR/s3.json)
        lake = SeaweedFS(self.dir, self.dir, p, "", "", str(B.VENV_BIN / "weed")).process()
        weed, weed_env = lake.argv, lake.env
        specs = [  # name, argv, extra env, cwd, health url
            (
                "lake",
                weed,
                weed_env,
                self.dir / "lake",
                f"http://127.0.0.1:{p['s3']}/",
            ),
            (
                "proxy",
                [str(B.VENV_BIN / "traefik"), f"--configfile={self._traefik(p)}"],
                {},
                self.dir,
                f"http://127.0.0.1:{p['proxy_api']}/ping",
            ),
            (
                "hub",
                [
                    str(B.VENV_BIN / "jupyterhub"),
                    "-f",
                    str(self.dir / "hub" / "jupyterhub_config.py"),
                ],
                {},
                self.dir / "hub",
                f"http://127.0.0.1:{p['hub']}/hub/health",
            ),
            (
                "api",
                [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    "benchapp:app",
                    "--app-dir",
                    str(self.dir / "api"),
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(p["api"]),
                    "--no-access-log",
                ],
                {},
                self.dir / "api",
                f"http://127.0.0.1:{p['api']}/api/health",
            ),
        ]
        procs: dict[str, subprocess.Popen[bytes]] = {}
        first: dict[str, float] = {}
        codes: dict[str, int | None] = {}
        wall0 = time.time()
        t0 = time.perf_counter()
        try:
            for name, argv, extra, cwd, _ in specs:
                log = open(self.dir / f"{name}.log", "ab")  # noqa: SIM115
                procs[name] = subprocess.Popen(
                    argv,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env={**env, **extra},
                    cwd=cwd,
                    start_new_session=True,
                )
                log.close()
            deadline = t0 + timeout
            while len(first) < len(specs) and time.perf_counter() < deadline:
                for name, *_, url in specs:
                    if name not in first:
                        code = B.http_status(url, 0.5)
                        if code is not None and code < 500:
                            first[name] = time.perf_counter() - t0
                            codes[name] = code
                if any(pr.poll() is not None for pr in procs.values()):
                    break
                time.sleep(POLL)
            elapsed = time.perf_counter() - t0
            per_pid = B.cpu_by_process(self.marker)
            cpu = sum(per_pid.values())
        finally:
            B.kill_groups(procs.values())
        left = B.reap(self.marker)
        ok = len(first) == len(specs)
        b = {f"{n} healthy": t for n, t in first.items()}
        for ts, _, msg in B.jupyter_events(self.dir / "hub.log"):
            if ts >= wall0 - 0.01 and msg.startswith("Running JupyterHub version"):
                b.setdefault("hub: 'Running JupyterHub' logged", ts - wall0)
        return {
            "seconds": elapsed if ok else None,
            "ok": ok,
            "cpu_seconds": cpu,
            "cpu_by_process": {n: per_pid[pr.pid] for n, pr in procs.items() if pr.pid in per_pid},
            "health_codes": codes,
            "breakdown": b,
            "leftovers": left,
            "exited": {
                n: pr.returncode
                for n, pr in procs.items()
                if pr.returncode not in (None, 0, -15, 143, -9)
            },
        }


# ---------------------------------------------------------------------------------- report
def breakdown_table(lake_runs: list[dict[str, Any]], anchor_runs: list[dict[str, Any]]) -> str:
    keys: list[str] = []
    for r in lake_runs + anchor_runs:
        for k in r["breakdown"]:
            if k not in keys:
                keys.append(k)
    order = [
        "supervisor forked",
        "runtime.json",
        "supervisor started",
        "hub: 'Running",
        "lake healthy",
        "proxy healthy",
        "hub healthy",
        "api healthy",
        "warm healthy",
    ]
    keys.sort(key=lambda k: next((i for i, o in enumerate(order) if k.startswith(o)), 99))
    rows = []
    for k in keys:
        a = [r["breakdown"][k] for r in lake_runs if k in r["breakdown"]]
        b = [r["breakdown"][k] for r in anchor_runs if k in r["breakdown"]]
        rows.append([k, B.fmt(B.summary(a)["median"]), B.fmt(B.summary(b)["median"])])
    rows.append(
        [
            "returned (ready: a login) / all healthy",
            B.fmt(B.summary([r["seconds"] for r in lake_runs if r["ok"]])["median"]),
            B.fmt(B.summary([r["seconds"] for r in anchor_runs if r["ok"]])["median"]),
        ]
    )
    rows.append(
        [
            "every component answered (LakeHub)",
            B.fmt(B.summary([r["all_healthy_seconds"] for r in lake_runs if r["ok"]])["median"]),
            "",
        ]
    )
    return B.table(["median seconds after launch", "LakeHub", "anchor"], rows)


def cpu_table(lake_runs: list[dict[str, Any]], anchor_runs: list[dict[str, Any]]) -> str:
    keys: list[str] = []
    for r in lake_runs + anchor_runs:
        for k in r.get("cpu_by_process", {}):
            if k not in keys:
                keys.append(k)
    rows = []
    for k in keys:
        a = [r["cpu_by_process"][k] for r in lake_runs if k in r.get("cpu_by_process", {})]
        b = [r["cpu_by_process"][k] for r in anchor_runs if k in r.get("cpu_by_process", {})]
        rows.append([k, B.fmt(B.summary(a)["median"]), B.fmt(B.summary(b)["median"])])
    return B.table(["median CPU seconds until all answer, by process", "LakeHub", "anchor"], rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--runs", type=int, default=5, help="timed starts of each (default 5)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = ap.parse_args()
    B.install_sigterm()
    started = time.perf_counter()
    info = B.host_info()
    info["other_load"] = B.other_load_note()
    root = B.bench_root("up")  # notebook accounts can walk into it (mode 0711)
    marker = str(root)
    lake, anchor = LakeHub(root), Anchor(root, marker)
    results: dict[str, Any] = {
        "benchmark": "up",
        "host": info,
        "runs": args.runs,
        "goal_seconds": GOAL_S,
        "root": str(root),
    }
    lake_runs: list[dict[str, Any]] = []
    anchor_runs: list[dict[str, Any]] = []
    problems: list[str] = []
    try:
        print(f"lakehub up benchmark: {args.runs} runs each, data in {root}", flush=True)
        first = lake.start("first", FIRST_TIMEOUT)
        print(
            f"  first start (builds environment): {B.fmt(first['seconds'])} s"
            f"{'' if first['ok'] else '  FAILED'}",
            flush=True,
        )
        problems += lake.down()
        if not first["ok"]:
            raise RuntimeError(f"first lakehub up failed:\n{first.get('output', '')}")
        anchor_first = anchor.start("first")
        problems += anchor_first["leftovers"]
        print(f"  anchor first start (fresh dirs): {B.fmt(anchor_first['seconds'])} s", flush=True)
        results.update(first_start=first, anchor_first_start=anchor_first)
        for i in range(args.runs):
            r = lake.start(str(i + 1), READY_TIMEOUT)
            lake_runs.append(r)
            problems += lake.down()
            a = anchor.start(str(i + 1))
            anchor_runs.append(a)
            problems += a["leftovers"]
            print(
                f"  run {i + 1}/{args.runs}: LakeHub {B.fmt(r['seconds'])} s"
                f"{'' if r['ok'] else ' FAILED'}   anchor {B.fmt(a['seconds'])} s"
                f"{'' if a['ok'] else ' FAILED'}",
                flush=True,
            )
    finally:
        if lake.runtime():
            problems += lake.down()
        problems += B.reap(marker, wait=5)
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)

    lh = [r["seconds"] for r in lake_runs if r["ok"]]
    an = [a["seconds"] for a in anchor_runs if a["ok"]]
    cols = ["median", "p95", "min", "max"]
    print()
    every = [r["all_healthy_seconds"] for r in lake_runs if r["ok"]]
    print("lakehub up, second and later starts on an existing data dir (seconds)")
    print(
        B.table(
            ["", "n", *cols],
            B.stats_rows("lakehub up --detach (ready)", lh, "anchor: bare, parallel", an, cols)
            # the anchor's four all answer; so do LakeHub's, a little after it is ready
            + B.stats_rows("LakeHub, all answering", every, "", an, cols)[::2],
        )
    )
    print()
    print("CPU seconds of all started processes until every one answers (less load-sensitive)")
    print(
        B.table(
            ["", "n", *cols],
            B.stats_rows(
                "lakehub up --detach",
                [r["cpu_seconds"] for r in lake_runs if r["ok"]],
                "anchor: bare components, parallel",
                [a["cpu_seconds"] for a in anchor_runs if a["ok"]],
                cols,
            ),
        )
    )
    print()
    print(cpu_table(lake_runs, anchor_runs))
    print()
    print(
        f"first start (builds environment): {B.fmt(first['seconds'])} s;"
        f" anchor first start (fresh dirs): {B.fmt(anchor_first['seconds'])} s"
    )
    med = B.summary(lh)["median"]
    verdict = "MET" if med <= GOAL_S else "NOT MET"
    print(f"goal: lakehub up <= {GOAL_S:.0f} s (median): {verdict} ({B.fmt(med)} s)")
    failed = [i + 1 for i, r in enumerate(lake_runs) if not r["ok"]]
    failed_a = [i + 1 for i, r in enumerate(anchor_runs) if not r["ok"]]
    if failed or failed_a:
        print(f"failed runs: LakeHub {failed}, anchor {failed_a}")
    print()
    print(breakdown_table(lake_runs, anchor_runs))
    print()
    total = B.print_footer(started, info, problems, "leftover processes")
    results.update(
        lakehub=lake_runs,
        anchor=anchor_runs,
        problems=problems,
        summary={
            "lakehub": B.summary(lh),
            "anchor": B.summary(an),
            "ratio_median": B.ratio(med, B.summary(an)["median"]),
            "goal_met": med <= GOAL_S,
        },
        total_seconds=total,
    )
    path = B.write_results("up", results)
    print(f"results: {path}")
    return 0 if lh and not problems else 1


if __name__ == "__main__":
    sys.exit(main())
