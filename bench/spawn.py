"""Benchmark: notebook server spawn latency per environment, LakeHub against plain JupyterHub.

Spawn latency = from sending ``POST /hub/api/users/NAME/server`` with the body
``{"environment": ENV, "size": "small"}`` (with the user's own token) until
``GET /user/NAME/api/status`` answers 200 through the front door (the proxy). Each server is
stopped (not timed) before the next spawn. Every environment (minimal, datascience, dask, spark)
is spawned ``--runs`` times on each hub; p50 and p95 are reported per environment and over all
spawns. A few users take turns, so first spawns (for LakeHub as root: the user's account and
home are created) and re-spawns are both measured.

LakeHub: one hub from ``lakehub up --detach``; users from ``lakehub user add``, tokens from
``lakehub user token``. The named environments build in the background after ``lakehub up``;
the benchmark waits (not timed, but reported) until every one is usable before it measures.

Anchor: one plain ``jupyterhub`` 6.1 (it starts its own configurable-http-proxy, the same Python
implementation LakeHub runs) with ``SimpleLocalProcessSpawner`` (``--allow-root`` when running as
root), the dummy authenticator and, as ``c.Spawner.cmd``, the ``jupyterhub-singleuser`` of
LakeHub's server environment (``envs/default``), so both launch the same JupyterLab. The anchor
gets the *same* request body; its ``c.Spawner.environment`` holds callables (a stock JupyterHub
feature) that read ``user_options["environment"]`` and set ``JUPYTER_PATH``, ``PATH`` and
``PYTHONUSERBASE`` exactly as LakeHub's spawner does, pointing at LakeHub's build of that
environment. So on both hubs the server finds the chosen environment's ``python3`` kernel first;
after every spawn (not timed) the benchmark reads ``/user/NAME/api/kernelspecs`` on both and
checks that ``python3`` runs from that build. Users and their tokens are made through the REST
API with an admin service token.

The two hubs run side by side and take turns spawn by spawn: each round spawns every environment
on both hubs, rotating the order of the environments and alternating which hub goes first, so a
change in machine load hits both hubs and all environments alike.

    .venv/bin/python bench/spawn.py [--runs 10] [--users 4] [--environments a,b] [--keep]
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
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib as B  # noqa: E402

ENVIRONMENTS = ("minimal", "datascience", "dask", "spark")
SIZE = "small"
GOAL_P50_S = 1.0
GOAL_P95_S = 2.0
GOAL_SPEEDUP = 2.0
ENVIRONMENTS_TIMEOUT = 1800.0  # first builds of all environments, from a cold package cache
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
c.JupyterHub.services = [{{"name": "bench", "api_token": {token!r}}}]
c.JupyterHub.load_roles = [{{"name": "admin", "services": ["bench"]}}]
c.JupyterHub.db_url = "sqlite:///{dir}/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = "{dir}/jupyterhub_cookie_secret"
c.JupyterHub.pid_file = "{dir}/jupyterhub.pid"
c.ConfigurableHTTPProxy.pid_file = "{dir}/jupyterhub-proxy.pid"
"""

# Not passed through str.format. Preceded by the lines that set ENV_BUILDS, DEFAULT_ENVIRONMENT,
# SERVER_ENV, HOMES and BENCH_MARK.
PLAIN_ENVIRONMENT = """
# The environment named in the spawn request's body (user_options), set the way LakeHub's
# spawner sets it: the kernel spec through JUPYTER_PATH, terminals and pip through PATH, and a
# per-environment PYTHONUSERBASE under the home.
def _chosen(spawner):
    return (spawner.user_options or {}).get("environment") or DEFAULT_ENVIRONMENT


def _user_base(spawner):
    return f"{HOMES}/{spawner.user.name}/.local/lakehub/{_chosen(spawner)}"


def _path(spawner):
    build = ENV_BUILDS[_chosen(spawner)]
    return f"{_user_base(spawner)}/bin:{build}/bin:{SERVER_ENV}/bin:/usr/local/bin:/usr/bin:/bin"


c.Spawner.environment = {
    "PATH": _path,
    "JUPYTER_PATH": lambda spawner: f"{ENV_BUILDS[_chosen(spawner)]}/share/jupyter",
    "PYTHONUSERBASE": _user_base,
    "BENCH_MARK": BENCH_MARK,
}
"""


class Hub:
    label = ""
    front = ""
    logs: list[Path] = []
    tokens: dict[str, str]

    def spawn(self, name: str, options: dict[str, str]) -> dict[str, Any]:
        token = self.tokens[name]
        r: dict[str, Any] = {"user": name, "ok": False, "options": options}
        with httpx.Client(
            base_url=self.front,
            headers={"Authorization": f"token {token}"},
            timeout=SPAWN_TIMEOUT,
            follow_redirects=False,
        ) as c:
            r["wall"] = time.time()
            t0 = time.perf_counter()
            resp = c.post(f"/hub/api/users/{name}/server", json=options)
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
            else:  # not timed: which build the server's python3 kernel runs from
                r["kernel_build"] = kernel_build(c, name)
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


def kernel_build(c: httpx.Client, name: str) -> str | None:
    """The environment directory of the ``python3`` kernel a running server offers, if any."""
    try:
        resp = c.get(f"/user/{name}/api/kernelspecs")
        argv = resp.json()["kernelspecs"]["python3"]["spec"]["argv"]
    except (httpx.HTTPError, ValueError, KeyError, TypeError):
        return None
    return str(Path(argv[0]).parent.parent)  # <build>/bin/python


class LakeHub(Hub):
    label = "LakeHub"

    def __init__(self, root: Path) -> None:
        self.hub = B.bench_hub(root, "lakehub/data")
        self.data = self.hub.data_dir
        self.front = self.hub.url
        self.logs = [self.data / "logs" / "hub.log", self.data / "logs" / "notebooks.log"]
        self.tokens = self.hub.tokens

    def start(self) -> float:
        t0 = time.perf_counter()
        self.hub.up(timeout=900)
        return time.perf_counter() - t0

    def add_user(self, name: str) -> None:
        self.hub.add_user(name)
        self.hub.token(name)

    def envs(self) -> Path:
        """Where the hub's environments are built (``environments_dir``, else DATA_DIR/envs)."""
        return Path(self.hub.env.get("LAKEHUB_ENVIRONMENTS_DIR") or self.data / "envs").resolve()

    def wait_environments(self, names: list[str], timeout: float) -> dict[str, float]:
        """Wait until every environment in ``names`` has a usable build and none is queued or
        building; print each change of status. Returns the seconds until each was usable."""
        t0 = time.perf_counter()
        usable: dict[str, float] = {}
        seen: dict[str, str] = {}
        with self.hub.admin_http() as c:
            while time.perf_counter() - t0 < timeout:
                envs = {e["name"]: e for e in c.get("/environments").json()}
                for name in names:
                    e = envs[name]
                    state = f"{e['status']}{': ' + e['progress'] if e['progress'] else ''}"
                    if seen.get(name) != state:
                        seen[name] = state
                        print(f"    {time.perf_counter() - t0:6.0f} s  {name}: {state}", flush=True)
                    if e["status"] == "failed" and not e["usable"]:
                        tail = c.get(f"/environments/{name}/log").text[-1500:]
                        raise RuntimeError(f"environment {name} failed to build:\n{tail}")
                    if e["usable"] and name not in usable:
                        usable[name] = time.perf_counter() - t0
                busy = any(e["status"] in ("queued", "building") for e in envs.values())
                if len(usable) == len(names) and not busy:
                    return usable
                time.sleep(0.5)
        raise RuntimeError(f"environments not usable after {timeout:.0f} s: {seen}")

    def close(self) -> list[str]:
        return self.hub.down() if (self.data / "run" / "runtime.json").exists() else []


class PlainHub(Hub):
    label = "plain JupyterHub"

    def __init__(
        self, root: Path, marker: str, env_dir: Path, builds: dict[str, str], default_env: str
    ) -> None:
        self.dir = root / "plain"
        (self.dir / "homes").mkdir(parents=True, exist_ok=True)
        self.port = B.free_port()
        self.front = f"http://127.0.0.1:{self.port}"
        self.token = secrets.token_hex(32)
        self.tokens = {}
        self.logs = [self.dir / "hub.log"]
        self.marker = marker
        args = ["--allow-root"] if os.geteuid() == 0 else []
        (self.dir / "jupyterhub_config.py").write_text(
            PLAIN_CONFIG.format(
                port=self.port,
                hub_port=B.free_port(),
                proxy_api=B.free_port(),
                chp=str(B.VENV_BIN / "configurable-http-proxy"),
                dir=self.dir,
                singleuser=str(env_dir / "bin" / "jupyterhub-singleuser"),
                args=args,
                token=self.token,
            )
            + "\n"
            + "".join(
                f"{k} = {v!r}\n"
                for k, v in (
                    ("ENV_BUILDS", builds),
                    ("DEFAULT_ENVIRONMENT", default_env),
                    ("SERVER_ENV", str(env_dir)),
                    ("HOMES", str(self.dir / "homes")),
                    ("BENCH_MARK", marker),
                )
            )
            + PLAIN_ENVIRONMENT
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
        "--runs", type=int, default=10, help="spawns per environment and hub (default 10)"
    )
    ap.add_argument("--users", type=int, default=4, help="users taking turns (default 4)")
    ap.add_argument(
        "--environments",
        default=",".join(ENVIRONMENTS),
        help=f"comma-separated (default {','.join(ENVIRONMENTS)})",
    )
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    ap.add_argument(
        "--keep-accounts",
        action="store_true",
        help="keep the lh-<name> unix accounts LakeHub creates (default: userdel)",
    )
    args = ap.parse_args()
    envs = [e for e in args.environments.split(",") if e]
    if args.users < 1 or args.runs < 1 or not envs:
        ap.error("--runs and --users must be >= 1, --environments not empty")
    B.install_sigterm()
    started = time.perf_counter()
    info = B.host_info()
    info["other_load"] = B.other_load_note()
    root = B.bench_root("spawn")  # per-user accounts can walk into it (mode 0711)
    marker = str(root)
    tag = secrets.token_hex(2)
    users = [f"bench{chr(ord('a') + i)}{tag}" for i in range(args.users)]
    accounts_before = {u: _account_exists(f"lh-{u}") for u in users}
    lake = LakeHub(root)
    plain: PlainHub | None = None
    results: dict[str, Any] = {
        "benchmark": "spawn",
        "host": info,
        "runs": args.runs,
        "environments": envs,
        "size": SIZE,
        "users": users,
        "root": str(root),
        "goal": {"p50_seconds": GOAL_P50_S, "p95_seconds": GOAL_P95_S, "speedup": GOAL_SPEEDUP},
    }
    lake_spawns: list[dict[str, Any]] = []
    plain_spawns: list[dict[str, Any]] = []
    problems: list[str] = []
    try:
        print(
            f"spawn benchmark: {args.runs} spawns per environment and hub "
            f"({', '.join(envs)}; size {SIZE}), users {', '.join(users)}, data in {root}",
            flush=True,
        )
        results["lakehub_up_seconds"] = lake.start()
        print(
            f"  lakehub up (first start, builds the server environment): "
            f"{results['lakehub_up_seconds']:.1f} s",
            flush=True,
        )
        print("  waiting for the named environments (built in the background):", flush=True)
        results["environments_usable_seconds"] = lake.wait_environments(envs, ENVIRONMENTS_TIMEOUT)
        env_dir = (lake.envs() / "default").resolve()
        builds = {e: str((lake.envs() / e).resolve()) for e in envs}
        results["builds"] = builds
        default_env = "datascience" if "datascience" in envs else envs[0]  # LakeHub's default
        plain = PlainHub(root, marker, env_dir, builds, default_env)
        results["plain_up_seconds"] = plain.start()
        print(f"  plain jupyterhub up: {results['plain_up_seconds']:.1f} s", flush=True)
        for u in users:
            lake.add_user(u)
            plain.add_user(u)
        hubs: tuple[Hub, Hub] = (lake, plain)
        baseline = len(B.leftovers(marker))  # both hubs, idle, no notebook server
        spawned: set[str] = set()
        for i in range(args.runs):
            indexed = list(enumerate(envs))
            for k, env in indexed[i % len(envs) :] + indexed[: i % len(envs)]:
                user = users[(i + k) % len(users)]
                kind = "re" if user in spawned else "first"
                spawned.add(user)
                line = []
                for hub in hubs if (i + k) % 2 == 0 else hubs[::-1]:
                    s = hub.spawn(user, {"environment": env, "size": SIZE})
                    s["kind"], s["round"], s["environment"] = kind, i + 1, env
                    s["kernel_ok"] = s.get("kernel_build") == builds[env]
                    s["stop"] = hub.stop(user)
                    # the server's processes must really be gone before the next spawn
                    if not B.wait_until(lambda: len(B.leftovers(marker)) <= baseline, 15, 0.2):
                        extra = len(B.leftovers(marker)) - baseline
                        problems.append(
                            f"{hub.label} stop {env} {i + 1} ({user}): {extra} process(es) "
                            "still running 15 s after the hub reported it stopped"
                        )
                    (lake_spawns if hub is lake else plain_spawns).append(s)
                    if not s["ok"]:
                        problems.append(
                            f"{hub.label} spawn {env} {i + 1} ({user}): {s.get('error')}"
                        )
                    elif not s["kernel_ok"]:
                        problems.append(
                            f"{hub.label} spawn {env} {i + 1} ({user}): python3 kernel from "
                            f"{s.get('kernel_build')}, not {builds[env]}"
                        )
                    if not s["stop"]["ok"]:
                        problems.append(f"{hub.label} stop {env} {i + 1} ({user}) did not finish")
                    line.append(f"{hub.label} {B.fmt(s.get('seconds'))} s")
                print(
                    f"  round {i + 1}/{args.runs} {env:<12} ({kind}-spawn of {user}): "
                    + "   ".join(sorted(line)),
                    flush=True,
                )
    finally:
        problems += lake.close()
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

    def secs(
        spawns: list[dict[str, Any]], kind: str | None = None, env: str | None = None
    ) -> list[float]:
        return [
            s["seconds"]
            for s in spawns
            if s["ok"] and kind in (None, s["kind"]) and env in (None, s["environment"])
        ]

    print()
    print(
        "spawn latency per environment: POST /hub/api/users/NAME/server "
        '{"environment": ENV, "size": "small"} -> 200 from /user/NAME/api/status through the '
        "front door (seconds)"
    )
    per_env: dict[str, dict[str, Any]] = {}
    env_rows: list[list[str]] = []
    for env in envs:
        lh, pj = B.summary(secs(lake_spawns, env=env)), B.summary(secs(plain_spawns, env=env))
        met = lh["median"] <= GOAL_P50_S and lh["p95"] <= GOAL_P95_S
        per_env[env] = {
            "lakehub": lh,
            "plain": pj,
            "ratio_p50": B.ratio(lh["median"], pj["median"]),
            "goal_met": met,
        }
        env_rows.append(
            [
                env,
                f"{lh['n']}/{pj['n']}",
                B.fmt(lh["median"]),
                B.fmt(lh["p95"]),
                B.fmt(pj["median"]),
                B.fmt(pj["p95"]),
                B.fmt(per_env[env]["ratio_p50"], "x"),
                "MET" if met else "NOT MET",
            ]
        )
    print(
        B.table(
            [
                "environment",
                "n LH/anchor",
                "LakeHub p50",
                "LakeHub p95",
                "anchor p50",
                "anchor p95",
                "p50 LH/anchor",
                f"goal p50<={GOAL_P50_S:.0f}s p95<={GOAL_P95_S:.0f}s",
            ],
            env_rows,
        )
    )
    print(
        "python3 kernel served from the chosen environment's build: "
        + ", ".join(
            f"{hub.label} {sum(1 for s in sp if s.get('kernel_ok'))}/{len(sp)}"
            for hub, sp in ((lake, lake_spawns), (plain, plain_spawns))
            if hub is not None
        )
    )

    cols = ["median", "p95", "min", "max"]
    print()
    print("all environments together (seconds)")
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
    goal1 = all(v["goal_met"] for v in per_env.values())
    goal2 = speedup >= GOAL_SPEEDUP
    print()
    print(
        f"goal: LakeHub p50 <= {GOAL_P50_S:.0f} s and p95 <= {GOAL_P95_S:.0f} s in every "
        f"environment: {'MET' if goal1 else 'NOT MET'} (over all: p50 {B.fmt(lh['median'])} s, "
        f"p95 {B.fmt(lh['p95'])} s)"
    )
    print(
        f"goal: LakeHub >= {GOAL_SPEEDUP:.0f}x faster than plain JupyterHub (p50, all): "
        f"{'MET' if goal2 else 'NOT MET'} ({B.fmt(speedup)}x)"
    )
    modes = sorted({s.get("spawn_mode", "?") for s in lake_spawns})
    print(f"LakeHub spawn mode seen in hub.log: {', '.join(modes)}")
    usable = results.get("environments_usable_seconds", {})
    print(
        "setup (not timed): environments usable after "
        + ", ".join(f"{e} {v:.0f} s" for e, v in usable.items())
        + f" (after lakehub up returned; up took {B.fmt(results.get('lakehub_up_seconds'))} s)"
    )
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
            "per_environment": per_env,
            "lakehub": lh,
            "plain": pj,
            "speedup_p50": speedup,
            "lakehub_first": B.summary(secs(lake_spawns, "first")),
            "lakehub_re": B.summary(secs(lake_spawns, "re")),
            "plain_first": B.summary(secs(plain_spawns, "first")),
            "plain_re": B.summary(secs(plain_spawns, "re")),
            "goal_per_environment_met": goal1,
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
