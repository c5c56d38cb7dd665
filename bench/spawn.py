"""Benchmark: notebook server spawn latency, LakeHub against plain JupyterHub, in one run.

Spawn latency = from sending ``POST /hub/api/users/NAME/server`` (with the user's own token) until
``GET /user/NAME/api/status`` answers 200 through the front door (the proxy). Each server is
stopped (not timed) before the next spawn. A few users take turns, so the first spawn of each
user and re-spawns are both measured; they are reported together and separately.

LakeHub: one hub from ``lakehub up --detach``; users from ``lakehub user add``, tokens from
``lakehub user token``.

Anchor: plain ``jupyterhub`` 6.1 (it starts its own configurable-http-proxy, the same Python
implementation LakeHub runs) with ``SimpleLocalProcessSpawner`` (``--allow-root`` when running as
root), the dummy authenticator and, as ``c.Spawner.cmd``, the ``jupyterhub-singleuser`` of
LakeHub's own built notebook environment, so both launch the same JupyterLab. Users and their
tokens are made through the REST API with an admin service token.

The two hubs run side by side and take turns spawn by spawn (alternating which goes first), so
a change in machine load hits both alike.

    .venv/bin/python bench/spawn.py [--runs 12] [--users 4] [--keep]
"""

from __future__ import annotations

import argparse
import os
import pwd
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib as B  # noqa: E402

GOAL_P50_S = 1.0
GOAL_SPEEDUP = 2.0
POLL = 0.05  # front-door polling interval while waiting for the server
SPAWN_TIMEOUT = 120.0
STOP_TIMEOUT = 60.0

PLAIN_CONFIG = """\
c = get_config()  # noqa: F821
c.JupyterHub.bind_url = "http://127.0.0.1:{port}/"
c.JupyterHub.hub_bind_url = "http://127.0.0.1:{hub_port}"
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{proxy_api}"
c.ConfigurableHTTPProxy.command = [{chp!r}]
c.JupyterHub.authenticator_class = "dummy"
c.Authenticator.allow_all = True
c.JupyterHub.spawner_class = "jupyterhub.spawner.SimpleLocalProcessSpawner"
c.SimpleLocalProcessSpawner.home_dir_template = "{dir}/homes/{{username}}"
c.Spawner.cmd = [{singleuser!r}]
c.Spawner.args = {args!r}
c.Spawner.default_url = "/lab"
c.Spawner.start_timeout = 60
c.Spawner.http_timeout = 60
c.Spawner.environment = {environment!r}
c.JupyterHub.services = [{{"name": "bench", "api_token": {token!r}}}]
c.JupyterHub.load_roles = [{{"name": "admin", "services": ["bench"]}}]
c.JupyterHub.db_url = "sqlite:///{dir}/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = "{dir}/jupyterhub_cookie_secret"
c.JupyterHub.pid_file = "{dir}/jupyterhub.pid"
c.ConfigurableHTTPProxy.pid_file = "{dir}/jupyterhub-proxy.pid"
"""


class Hub:
    label = ""
    front = ""
    logs: list[Path] = []
    tokens: dict[str, str]

    def spawn(self, name: str) -> dict[str, Any]:
        token = self.tokens[name]
        r: dict[str, Any] = {"user": name, "ok": False}
        with httpx.Client(
            base_url=self.front,
            headers={"Authorization": f"token {token}"},
            timeout=SPAWN_TIMEOUT,
            follow_redirects=False,
        ) as c:
            r["wall"] = time.time()
            t0 = time.perf_counter()
            resp = c.post(f"/hub/api/users/{name}/server")
            r["post_seconds"] = time.perf_counter() - t0
            r["post_status"] = resp.status_code
            if resp.status_code not in (201, 202):
                r["error"] = f"POST {resp.status_code}: {resp.text[:300]}"
                return r
            polls = 0
            deadline = t0 + SPAWN_TIMEOUT
            while time.perf_counter() < deadline:
                try:
                    s = c.get(f"/user/{name}/api/status")
                except httpx.TransportError as err:
                    s, r["transport_error"] = None, str(err)
                polls += 1
                if s is not None and s.status_code == 200:
                    try:
                        ok = "started" in s.json()
                    except ValueError:
                        ok = False
                    if ok:
                        r["seconds"] = time.perf_counter() - t0
                        r["ok"] = True
                        break
                time.sleep(POLL)
            r["polls"] = polls
            if not r["ok"]:
                r["error"] = f"no 200 from /user/{name}/api/status in {SPAWN_TIMEOUT:.0f} s"
        return r

    def stop(self, name: str) -> dict[str, Any]:
        token = self.tokens[name]
        with httpx.Client(
            base_url=self.front, headers={"Authorization": f"token {token}"}, timeout=STOP_TIMEOUT
        ) as c:
            t0 = time.perf_counter()
            code = c.delete(f"/hub/api/users/{name}/server").status_code
            deadline = t0 + STOP_TIMEOUT
            while time.perf_counter() < deadline:
                model = c.get(f"/hub/api/users/{name}")
                if model.status_code == 200 and not model.json().get("servers"):
                    return {"ok": True, "status": code, "seconds": time.perf_counter() - t0}
                time.sleep(0.1)
        return {"ok": False, "status": code, "seconds": time.perf_counter() - t0}


class LakeHub(Hub):
    label = "LakeHub"

    def __init__(self, root: Path, marker: str) -> None:
        self.data = root / "lakehub" / "data"
        self.port = B.free_port()
        self.front = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "LAKEHUB_LAKE_PORT": "0",
            "LAKEHUB_ADMIN_PASSWORD": secrets.token_urlsafe(12),
            "BENCH_MARK": marker,
        }
        self.env.pop("LAKEHUB_DATA_DIR", None)
        self.logs = [self.data / "logs" / "hub.log", self.data / "logs" / "notebooks.log"]
        self.tokens = {}

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [str(B.VENV_BIN / "lakehub"), *args, "--data-dir", str(self.data)],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=timeout,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"lakehub {' '.join(args)}: {proc.stderr.strip()[-1500:]}")
        return proc

    def start(self) -> float:
        t0 = time.perf_counter()
        self.cli("up", "--detach", "--port", str(self.port), timeout=900)
        return time.perf_counter() - t0

    def add_user(self, name: str) -> None:
        self.cli("user", "add", name)
        self.tokens[name] = self.cli("user", "token", name).stdout.strip()

    def close(self) -> None:
        if (self.data / "run" / "runtime.json").exists():
            subprocess.run(
                [str(B.VENV_BIN / "lakehub"), "down", "--data-dir", str(self.data)],
                capture_output=True,
                env=self.env,
                timeout=120,
            )


class PlainHub(Hub):
    label = "plain JupyterHub"

    def __init__(self, root: Path, marker: str, env_dir: Path) -> None:
        self.dir = root / "plain"
        (self.dir / "homes").mkdir(parents=True, exist_ok=True)
        self.port = B.free_port()
        self.front = f"http://127.0.0.1:{self.port}"
        self.token = secrets.token_hex(32)
        self.tokens = {}
        self.logs = [self.dir / "hub.log"]
        self.marker = marker
        args = ["--allow-root"] if os.geteuid() == 0 else []
        environment = {"PATH": f"{env_dir}/bin:/usr/local/bin:/usr/bin:/bin", "BENCH_MARK": marker}
        (self.dir / "jupyterhub_config.py").write_text(
            PLAIN_CONFIG.format(
                port=self.port,
                hub_port=B.free_port(),
                proxy_api=B.free_port(),
                chp=str(B.VENV_BIN / "configurable-http-proxy"),
                dir=self.dir,
                singleuser=str(env_dir / "bin" / "jupyterhub-singleuser"),
                args=args,
                environment=environment,
                token=self.token,
            )
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> float:
        env = {**os.environ, "BENCH_MARK": self.marker}
        for k in ("VIRTUAL_ENV", "PYTHONPATH"):  # LakeHub's spawner drops these too
            env.pop(k, None)
        t0 = time.perf_counter()
        with open(self.logs[0], "ab") as log:
            proc = self.proc = subprocess.Popen(
                [str(B.VENV_BIN / "jupyterhub"), "-f", str(self.dir / "jupyterhub_config.py")],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=self.dir,
                start_new_session=True,
            )
        up = B.wait_until(
            lambda: B.http_status(f"{self.front}/hub/health") == 200 or proc.poll() is not None,
            120,
            0.1,
        )
        if not up or proc.poll() is not None:
            tail = self.logs[0].read_text(errors="replace")[-1500:]
            raise RuntimeError(f"plain JupyterHub did not start:\n{tail}")
        return time.perf_counter() - t0

    def add_user(self, name: str) -> None:
        h = {"Authorization": f"token {self.token}"}
        with httpx.Client(base_url=self.front, headers=h, timeout=60) as c:
            r = c.post(f"/hub/api/users/{name}")
            if r.status_code != 201:
                raise RuntimeError(f"plain hub: create {name}: {r.status_code} {r.text[:300]}")
            r = c.post(f"/hub/api/users/{name}/tokens", json={"note": "bench"})
            if r.status_code != 201:
                raise RuntimeError(f"plain hub: token for {name}: {r.status_code} {r.text[:300]}")
            self.tokens[name] = r.json()["token"]

    def close(self) -> None:
        if self.proc is not None:
            B.kill_groups([self.proc], grace=20)


# ---------------------------------------------------------------------------------- analysis
def log_events(paths: list[Path]) -> list[tuple[float, str, str]]:
    events: list[tuple[float, str, str]] = []
    for p in paths:
        events += B.jupyter_events(p)
    return sorted(events, key=lambda e: e[0])


def attach_log_timings(hub: Hub, spawns: list[dict[str, Any]]) -> None:
    """Add, per spawn, when each step appeared in the hub's logs (seconds after the POST)."""
    events = log_events(hub.logs)
    for i, s in enumerate(spawns):
        name, w0 = s["user"], s["wall"]
        w1 = spawns[i + 1]["wall"] if i + 1 < len(spawns) else float("inf")
        win = [e for e in events if w0 - 0.002 <= e[0] < w1]
        steps: dict[str, float] = {}

        def first(
            label: str,
            pred: Any,
            win: list[tuple[float, str, str]] = win,
            steps: dict[str, float] = steps,
            w0: float = w0,
        ) -> None:
            for ts, logger, msg in win:
                if pred(logger, msg):
                    steps[label] = ts - w0
                    return

        first("hub: Spawning", lambda lg, m: lg == "JupyterHub" and m.startswith("Spawning "))
        first("server: first log line", lambda lg, m: lg != "JupyterHub")
        first("server: listening ('is running at')", lambda lg, m: "is running at" in m)
        took_msg, route_msg = f"User {name} took", f"Adding user {name} to proxy"
        first(
            "hub: 'took X seconds to start'",
            lambda lg, m, t=took_msg: lg == "JupyterHub" and m.startswith(t),
        )
        first(
            "hub: adding proxy route",
            lambda lg, m, t=route_msg: lg == "JupyterHub" and m.startswith(t),
        )
        for _, _lg, m in win:
            took = re.search(rf"User {re.escape(name)} took ([\d.]+) seconds", m)
            if took:
                s["hub_reported_seconds"] = float(took.group(1))
                break
        for _, lg, m in win:
            if lg == "JupyterHub" and m.startswith("Spawning "):
                s["spawn_mode"] = "warm" if " warm as uid" in m else "popen"
                break
        steps["client: POST returned"] = s.get("post_seconds", float("nan"))
        if s.get("ok"):
            steps["client: 200 through front door"] = s["seconds"]
        s["steps"] = steps


def step_table(lake: list[dict[str, Any]], plain: list[dict[str, Any]]) -> str:
    keys: list[str] = []
    for s in lake + plain:
        for k in s.get("steps", {}):
            if k not in keys:
                keys.append(k)
    rows = []
    for k in sorted(
        keys,
        key=lambda k: B.summary([s["steps"][k] for s in lake + plain if k in s.get("steps", {})])[
            "median"
        ],
    ):
        a = [s["steps"][k] for s in lake if k in s.get("steps", {})]
        b = [s["steps"][k] for s in plain if k in s.get("steps", {})]
        rows.append([k, B.fmt(B.summary(a)["median"]), B.fmt(B.summary(b)["median"])])
    return B.table(["median seconds after POST sent", "LakeHub", "plain JupyterHub"], rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument(
        "--runs", type=int, default=12, help="spawns per hub (default 12, >= 10 for p95)"
    )
    ap.add_argument("--users", type=int, default=4, help="users taking turns (default 4)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    ap.add_argument(
        "--keep-accounts",
        action="store_true",
        help="keep the lh-<name> unix accounts LakeHub creates (default: userdel)",
    )
    args = ap.parse_args()
    if args.users < 1 or args.runs < 1:
        ap.error("--runs and --users must be >= 1")
    B.install_sigterm()
    started = time.perf_counter()
    info = B.host_info()
    info["other_load"] = B.other_load_note()
    root = Path(tempfile.mkdtemp(prefix="lakehub-bench-spawn-", dir="/tmp"))
    root.chmod(0o711)  # per-user accounts must be able to walk into the data directory
    marker = str(root)
    tag = secrets.token_hex(2)
    users = [f"bench{chr(ord('a') + i)}{tag}" for i in range(args.users)]
    accounts_before = {u: _account_exists(f"lh-{u}") for u in users}
    lake = LakeHub(root, marker)
    plain: PlainHub | None = None
    results: dict[str, Any] = {
        "benchmark": "spawn",
        "host": info,
        "runs": args.runs,
        "users": users,
        "root": str(root),
        "goal": {"p50_seconds": GOAL_P50_S, "speedup": GOAL_SPEEDUP},
    }
    lake_spawns: list[dict[str, Any]] = []
    plain_spawns: list[dict[str, Any]] = []
    problems: list[str] = []
    try:
        print(
            f"spawn benchmark: {args.runs} spawns per hub, users {', '.join(users)}, "
            f"data in {root}",
            flush=True,
        )
        results["lakehub_up_seconds"] = lake.start()
        print(
            f"  lakehub up (first start, builds environment): "
            f"{results['lakehub_up_seconds']:.1f} s",
            flush=True,
        )
        env_dir = (lake.data / "envs" / "default").resolve()
        plain = PlainHub(root, marker, env_dir)
        results["plain_up_seconds"] = plain.start()
        print(f"  plain jupyterhub up: {results['plain_up_seconds']:.1f} s", flush=True)
        for u in users:
            lake.add_user(u)
            plain.add_user(u)
        hubs: tuple[Hub, Hub] = (lake, plain)
        baseline = len(B.leftovers(marker))  # both hubs, idle, no notebook server
        for i in range(args.runs):
            user = users[i % len(users)]
            kind = "first" if i < len(users) else "re"
            line = []
            for hub in hubs if i % 2 == 0 else hubs[::-1]:
                s = hub.spawn(user)
                s["kind"], s["index"] = kind, i + 1
                s["stop"] = hub.stop(user)
                # the server's processes must really be gone before the next spawn
                if not B.wait_until(lambda: len(B.leftovers(marker)) <= baseline, 15, 0.2):
                    extra = len(B.leftovers(marker)) - baseline
                    problems.append(
                        f"{hub.label} stop {i + 1} ({user}): {extra} process(es) "
                        "still running 15 s after the hub reported it stopped"
                    )
                (lake_spawns if hub is lake else plain_spawns).append(s)
                if not s["ok"]:
                    problems.append(f"{hub.label} spawn {i + 1} ({user}): {s.get('error')}")
                if not s["stop"]["ok"]:
                    problems.append(f"{hub.label} stop {i + 1} ({user}) did not finish")
                line.append(f"{hub.label} {B.fmt(s.get('seconds'))} s")
            print(
                f"  spawn {i + 1}/{args.runs} ({kind}-spawn of {user}): "
                + "   ".join(sorted(line)),
                flush=True,
            )
    finally:
        lake.close()
        if plain is not None:
            plain.close()
        problems += [f"leftover process: {p}" for p in B.reap(marker, wait=15)]
        if not args.keep_accounts:
            for u in users:
                if not accounts_before[u] and _account_exists(f"lh-{u}"):
                    subprocess.run(["userdel", f"lh-{u}"], capture_output=True, timeout=30)
        # the logs are read once everything has stopped; then the directory goes
        attach_log_timings(lake, lake_spawns)
        if plain is not None:
            attach_log_timings(plain, plain_spawns)
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)

    def secs(spawns: list[dict[str, Any]], kind: str | None = None) -> list[float]:
        return [s["seconds"] for s in spawns if s["ok"] and (kind is None or s["kind"] == kind)]

    cols = ["median", "p95", "min", "max"]
    print()
    print(
        "spawn latency: POST /hub/api/users/NAME/server -> 200 from /user/NAME/api/status "
        "through the front door (seconds)"
    )
    rows: list[list[str]] = []
    groups: list[tuple[str, str | None]] = [
        ("all spawns", None),
        ("first spawns", "first"),
        ("re-spawns", "re"),
    ]
    for title, sel in groups:
        sub = B.stats_rows(
            f"LakeHub, {title}",
            secs(lake_spawns, sel),
            f"plain JupyterHub, {title}",
            secs(plain_spawns, sel),
            cols,
        )
        sub[2][0] = f"ratio LakeHub/plain, {title}"
        rows += sub
    print(B.table(["", "n", *(("p50" if c == "median" else c) for c in cols)], rows))
    lh, pj = B.summary(secs(lake_spawns)), B.summary(secs(plain_spawns))
    speedup = B.ratio(pj["median"], lh["median"])
    goal1 = lh["median"] <= GOAL_P50_S
    goal2 = speedup >= GOAL_SPEEDUP
    print()
    print(
        f"goal: LakeHub p50 <= {GOAL_P50_S:.0f} s: {'MET' if goal1 else 'NOT MET'} "
        f"({B.fmt(lh['median'])} s)"
    )
    print(
        f"goal: LakeHub >= {GOAL_SPEEDUP:.0f}x faster than plain JupyterHub (p50): "
        f"{'MET' if goal2 else 'NOT MET'} ({B.fmt(speedup)}x)"
    )
    modes = sorted({s.get("spawn_mode", "?") for s in lake_spawns})
    print(f"LakeHub spawn mode seen in hub.log: {', '.join(modes)}")
    print()
    print(step_table(lake_spawns, plain_spawns))
    hub_rep = [
        B.summary([s["hub_reported_seconds"] for s in sp if "hub_reported_seconds" in s])
        for sp in (lake_spawns, plain_spawns)
    ]
    print(
        f"hub-reported 'took X seconds to start', median: LakeHub {B.fmt(hub_rep[0]['median'])}"
        f" s, plain {B.fmt(hub_rep[1]['median'])} s"
    )
    stops = (
        B.summary([s["stop"]["seconds"] for s in lake_spawns]),
        B.summary([s["stop"]["seconds"] for s in plain_spawns]),
    )
    print(
        f"stop (not part of the latency), median: LakeHub {B.fmt(stops[0]['median'])} s, "
        f"plain {B.fmt(stops[1]['median'])} s"
    )
    print()
    total = B.print_footer(started, info, problems, "problems")
    results.update(
        lakehub=lake_spawns,
        plain=plain_spawns,
        problems=problems,
        summary={
            "lakehub": lh,
            "plain": pj,
            "speedup_p50": speedup,
            "lakehub_first": B.summary(secs(lake_spawns, "first")),
            "lakehub_re": B.summary(secs(lake_spawns, "re")),
            "plain_first": B.summary(secs(plain_spawns, "first")),
            "plain_re": B.summary(secs(plain_spawns, "re")),
            "goal_p50_met": goal1,
            "goal_speedup_met": goal2,
        },
        total_seconds=total,
    )
    path = B.write_results("spawn", results)
    print(f"results: {path}")
    return 0 if secs(lake_spawns) and secs(plain_spawns) and not problems else 1


def _account_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


if __name__ == "__main__":
    sys.exit(main())
