"""Benchmark: model serving. One scikit-learn iris model (a DecisionTreeClassifier, trained here,
deterministic), one row per request in the Open Inference Protocol v2 JSON body, driven by
Debian's ``wrk`` at c=1, 8 and 32 connections (threads = min(c, 2)) for ``--seconds`` each,
``--runs`` times; req/s, p50 and p99 latency (wrk's ``--latency``), HTTP errors (status >= 400)
and socket errors. The targets take turns, the first rotating from one measurement to the next.

Anchors, same run, same request:
  * bare FastAPI: ``POST /v2/models/iris/infer`` in a FastAPI app under one uvicorn worker
    (uvloop and httptools when the project's venv has them, uvicorn's defaults otherwise), the
    model's ``predict`` inline, in the event loop;
  * MLServer 1.7.1 with its scikit-learn runtime, ``parallel_workers: 0``, ``debug: false`` (no
    access log, as for the bare app), gRPC and metrics on free loopback ports, in a venv of its own
    that the benchmark builds with ``uv`` once and keeps (``~/.cache/lakehub-bench/``), the
    model saved with joblib by that venv's scikit-learn (the same training, the same
    predictions on all 150 rows, checked).

LakeHub, same run, same request (its model takes one tensor of shape [1, 4] too), the user's
token in ``Authorization: Bearer``: one hub through the tests' launcher (``tests/hubs.py``), its
notebook environments built in a directory kept from run to run (``~/.cache/lakehub-bench/envs``,
or ``/var/tmp/lakehub-bench/envs`` when the home is closed to the replicas' accounts), waited for
(not timed) until ``datascience`` is usable and no build runs; one regular user; the same
training registered with MLflow's client on the hub's tracking server (cloudpickle, signature,
input example, alias ``champion``) and deployed as the endpoint ``iris`` (``iris@champion``, one
replica, in ``datascience``):
  * "LakeHub, front door": ``/services/lakehub/serving/<user>/iris/v2/models/iris/infer``
    through the hub's proxy, as from outside;
  * "LakeHub, direct": the same path on the control plane's own port, as notebooks and jobs
    reach it;
  * deploy time, request to first answer: ``POST /api/endpoints`` until the request above first
    gets a 200 through the front door (polled every 50 ms), ``--runs`` times, the endpoint
    deleted (its replica gone) between them; the median;
  * a redeploy under load, after the table's measurements: wrk at c=8 against the direct target
    while version 2 (a tree of depth 2) is registered, ``champion`` moved to it and the
    endpoint PATCHed to ``iris@champion``; wrk's non-2xx and socket errors, and the seconds
    from the PATCH until the endpoint says version 2 is serving. The load goes on until the old
    replica's process has exited (it drains first), then 1 s more, at least 10 s in all; wrk
    is then stopped with SIGINT, on which it reports.

    .venv/bin/python bench/serving.py [--runs 3] [--seconds 5] [--keep]
    .venv/bin/python bench/serving.py --seconds 3 --runs 1     # a quick check (about 3 minutes)
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import importlib.util
import io
import json
import os
import pwd
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib as B  # noqa: E402

MLSERVER = "1.7.1"
# uvloop < 0.22 (its workers restart forever with newer ones) and httptools (uvicorn's C parser,
# which MLServer's uvicorn uses when present: 15-25% more requests/s than h11 here), so the
# anchor is MLServer at its best on this machine
MLSERVER_SPECS = (
    f"mlserver=={MLSERVER}",
    f"mlserver-sklearn=={MLSERVER}",
    "uvloop<0.22",
    "httptools",
)
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "lakehub-bench"
CONCURRENCY = (1, 8, 32)
INFER_PATH = "/v2/models/iris/infer"
ROW = [5.1, 3.5, 1.4, 0.2]  # iris row 0, class 0 (setosa)
EXPECTED = 0
BODY = json.dumps(
    {"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": ROW}]},
    separators=(",", ":"),
).encode()
JSON_HEADERS = {"Content-Type": "application/json"}
WARMUP_SECONDS = 1
MLSERVER_LABEL = f"MLServer {MLSERVER}"
BARE_LABEL = "bare FastAPI"
FRONT_LABEL = "LakeHub, front door"
DIRECT_LABEL = "LakeHub, direct"
PREFIX = "/services/lakehub"
MODEL = "iris"
ALIAS = "champion"
SERVING_ENV = "datascience"  # where replicas run (the model names no environment of its own)
ENV_TIMEOUT = 900.0  # the environments' builds on a hub's first start with an empty cache
DEPLOY_TIMEOUT = 300.0
REDEPLOY_C = 8
REDEPLOY_SECONDS = 10  # at least (see LakeHubSide.redeploy_under_load)
REDEPLOY_LIMIT = 600  # wrk's -d for it: stopped long before, once the old replica is gone

# the same training in the project's venv and in MLServer's (its scikit-learn may differ)
TRAIN = """
import json, sys
import sklearn
from sklearn.datasets import load_iris
from sklearn.tree import DecisionTreeClassifier
X, y = load_iris(return_X_y=True)
model = DecisionTreeClassifier(random_state=0).fit(X, y)
if len(sys.argv) > 1:
    import joblib
    joblib.dump(model, sys.argv[1])
print(json.dumps({"sklearn": sklearn.__version__, "predictions": model.predict(X).tolist()}))
"""

BARE_APP = """
import os

import joblib
import numpy as np
from fastapi import FastAPI
from pydantic import BaseModel


class Tensor(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    data: list[float]


class InferenceRequest(BaseModel):
    inputs: list[Tensor]


model = joblib.load(os.environ["BENCH_MODEL"])
app = FastAPI()


@app.get("/v2/health/ready")
async def ready():
    return {"ready": True}


@app.post("/v2/models/iris/infer")
async def infer(req: InferenceRequest):
    x = req.inputs[0]
    rows = np.asarray(x.data, dtype=np.float64).reshape(x.shape)
    pred = model.predict(rows)
    return {
        "model_name": "iris",
        "outputs": [
            {"name": "predict", "shape": [len(pred)], "datatype": "INT64", "data": pred.tolist()}
        ],
    }
"""


@dataclass
class Target:
    """One endpoint to measure: wrk POSTs ``body`` with ``headers`` to ``url``."""

    label: str
    url: str
    headers: dict[str, str]
    body: bytes
    cleanup: Callable[[], None] = lambda: None
    info: dict[str, Any] = field(default_factory=dict)
    # given wrk's path, a redeploy under load of what this target serves, once measured
    redeploy: Callable[[str], dict[str, Any]] | None = None


# ---------------------------------------------------------------------------------- model
def train_model() -> tuple[Any, list[int]]:
    """The iris model in this process, and its predictions on the 150 rows."""
    from sklearn.datasets import load_iris
    from sklearn.tree import DecisionTreeClassifier

    x, y = load_iris(return_X_y=True)
    model = DecisionTreeClassifier(random_state=0).fit(x, y)
    return model, [int(p) for p in model.predict(x)]


# ---------------------------------------------------------------------------------- processes
def spawn(
    cmd: list[str], log: Path, marker: str, env: dict[str, str], cwd: Path
) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen(
            cmd,
            cwd=cwd,
            env={**os.environ, **env, "BENCH_MARK": marker},
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float) -> float:
    """Seconds until ``url`` answers 200; raises if the process dies or time runs out."""
    t = time.perf_counter()

    def ready() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}; see {log}")
        return B.http_status(url) == 200

    if not B.wait_until(ready, timeout, 0.1):
        raise RuntimeError(f"{url} did not answer 200 within {timeout:.0f} s; see {log}")
    return time.perf_counter() - t


def check_answer(t: Target) -> dict[str, Any]:
    """The target's answer to the benchmark's request: a 200 with the expected class, or exit."""
    try:
        r = httpx.post(t.url, content=t.body, headers=t.headers, timeout=30)
        answer = r.json() if r.status_code == 200 else None
    except (httpx.HTTPError, ValueError) as err:
        raise SystemExit(f"{t.label}: {t.url} did not answer the request: {err}") from err
    try:
        data = answer["outputs"][0]["data"] if answer else None
    except (KeyError, IndexError, TypeError):
        data = None
    if r.status_code != 200 or data != [EXPECTED]:
        raise SystemExit(
            f"{t.label}: POST {t.url} answered {r.status_code}, not a 200 with outputs "
            f"[{EXPECTED}]: {r.text[:500]}"
        )
    assert isinstance(answer, dict)
    return answer


# ---------------------------------------------------------------------------------- bare FastAPI
def bare_target(root: Path, model: Any) -> Target:
    import joblib

    model_file = root / "bare-model.joblib"
    joblib.dump(model, model_file)
    (root / "bare_app.py").write_text(BARE_APP)
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "auto"
    http = "httptools" if importlib.util.find_spec("httptools") else "auto"
    port = B.free_port()
    log = root / "bare.log"
    cmd = [
        sys.executable,
        "-m",
        "uvicorn",
        "bare_app:app",
        "--app-dir",
        str(root),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--loop",
        loop,
        "--http",
        http,
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    proc = spawn(cmd, log, str(root), {"BENCH_MODEL": str(model_file)}, root)
    base = f"http://127.0.0.1:{port}"
    try:
        took = wait_ready(f"{base}/v2/health/ready", proc, log, 60)
    except BaseException:
        B.kill_groups([proc])
        raise
    import fastapi
    import uvicorn

    return Target(
        BARE_LABEL,
        base + INFER_PATH,
        dict(JSON_HEADERS),
        BODY,
        lambda: B.kill_groups([proc]),
        {
            "loop": loop if loop != "auto" else "auto (asyncio: uvloop is not installed)",
            "http": http,
            "fastapi": fastapi.__version__,
            "uvicorn": uvicorn.__version__,
            "start_seconds": took,
        },
    )


# ---------------------------------------------------------------------------------- MLServer
def mlserver_venv() -> tuple[Path, dict[str, Any]]:
    """MLServer's venv, built once with uv under the cache directory; what is known of its build.

    A venv without its ``build.json`` (an interrupted build) is removed and built again."""
    spec = hashlib.sha256("\n".join(MLSERVER_SPECS).encode()).hexdigest()[:8]
    venv = CACHE / f"mlserver-{MLSERVER}-{spec}"
    stamp = venv / "build.json"
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / f"mlserver-{MLSERVER}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if stamp.exists():
            return venv, {**json.loads(stamp.read_text()), "reused": True}
        shutil.rmtree(venv, ignore_errors=True)
        uv = str(B.VENV_BIN / "uv")
        python = sys.executable if sys.version_info < (3, 13) else "3.12"  # MLServer: < 3.13
        print(f"  building MLServer's venv in {venv} ...", flush=True)
        t = time.perf_counter()
        subprocess.run([uv, "venv", "-q", "--python", python, str(venv)], check=True, timeout=300)
        subprocess.run(
            [uv, "pip", "install", "-q", "--python", str(venv / "bin" / "python"), *MLSERVER_SPECS],
            check=True,
            timeout=1800,
        )
        took = time.perf_counter() - t
        freeze = subprocess.run(
            [uv, "pip", "freeze", "--python", str(venv / "bin" / "python")],
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout.split()
        build = {
            "specs": list(MLSERVER_SPECS),
            "seconds": took,
            "when": datetime.now().isoformat(timespec="seconds"),
            "freeze": freeze,
        }
        stamp.write_text(json.dumps(build, indent=2) + "\n")
        return venv, {**build, "reused": False}


def mlserver_target(root: Path, predictions: list[int]) -> Target:
    venv, build = mlserver_venv()
    how = "reused" if build["reused"] else "built"
    print(f"  MLServer's venv {how} ({venv}; built in {build['seconds']:.0f} s)", flush=True)
    models = root / "mlserver"
    model_dir = models / "iris"
    model_dir.mkdir(parents=True)
    trained = subprocess.run(
        [str(venv / "bin" / "python"), "-c", TRAIN, str(model_dir / "model.joblib")],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    theirs = json.loads(trained.stdout.strip().splitlines()[-1])
    if theirs["predictions"] != predictions:
        raise SystemExit("MLServer's scikit-learn trains a different iris model; stopping")
    http, grpc, metrics = B.free_port(), B.free_port(), B.free_port()
    settings = {
        "host": "127.0.0.1",
        "http_port": http,
        "grpc_port": grpc,
        "metrics_port": metrics,
        "parallel_workers": 0,
        "debug": False,  # its default (True) writes an access-log line per request
    }
    (models / "settings.json").write_text(json.dumps(settings, indent=2))
    (model_dir / "model-settings.json").write_text(
        json.dumps(
            {
                "name": "iris",
                "implementation": "mlserver_sklearn.SKLearnModel",
                "parameters": {"uri": "./model.joblib"},
            },
            indent=2,
        )
    )
    log = root / "mlserver.log"
    proc = spawn([str(venv / "bin" / "mlserver"), "start", str(models)], log, str(root), {}, models)
    base = f"http://127.0.0.1:{http}"
    try:
        took = wait_ready(f"{base}/v2/health/ready", proc, log, 180)
    except BaseException:
        B.kill_groups([proc])
        raise
    return Target(
        MLSERVER_LABEL,
        base + INFER_PATH,
        dict(JSON_HEADERS),
        BODY,
        lambda: B.kill_groups([proc]),
        {
            "venv": str(venv),
            "build": build,
            "sklearn": theirs["sklearn"],
            "settings": settings,
            # MLServer installs uvloop and runs uvicorn with its defaults: httptools if present
            "loop": next((p for p in build["freeze"] if p.startswith("uvloop==")), "asyncio"),
            "http": next((p for p in build["freeze"] if p.startswith("httptools==")), "h11"),
            "start_seconds": took,
        },
    )


# ---------------------------------------------------------------------------------- LakeHub
def reachable_by_others(path: Path) -> bool:
    """Whether every existing folder from ``/`` down to ``path`` lets other accounts through."""
    for p in [*reversed(path.parents), path]:
        if p.exists() and not p.stat().st_mode & 0o001:
            return False
    return True


def environments_dir() -> Path:
    """Where the benchmark's hubs build their notebook environments, kept from run to run so a
    later run reuses the builds (LakeHub's ``environments_dir``; hubs sharing one take turns
    building). Run as root, LakeHub starts replicas as their owner's account (``lh-<name>``),
    which must reach it: the cache directory when every folder above it lets others through
    (not under a home of mode 0700, as root's is), else ``/var/tmp/lakehub-bench/envs``."""
    shared = os.geteuid() != 0 or reachable_by_others(CACHE)
    base = CACHE if shared else Path("/var/tmp/lakehub-bench")
    envs = base / "envs"
    envs.mkdir(mode=0o755, parents=True, exist_ok=True)
    for p in (base, envs):
        p.chmod(0o755)  # noqa: S103 (every user account runs these environments)
    return envs


class LakeHubSide:
    """One hub, one regular user and the ``iris`` endpoint: what both LakeHub targets, the
    deploy times and the redeploy under load share."""

    def __init__(self, root: Path) -> None:
        self.envs = environments_dir()
        env = {"BENCH_MARK": str(root), "LAKEHUB_ENVIRONMENTS_DIR": str(self.envs)}
        self.hub: B.Hub = B.Hub.create(root / "lakehub", env)
        self.user = f"bench{secrets.token_hex(3)}"
        self.token = ""
        self.front = self.hub.url
        self.direct = ""
        self.path = ""  # serving/<owner>/iris, once deployed
        self.api: httpx.Client | None = None
        self.started = False
        self.info: dict[str, Any] = {"environments_dir": str(self.envs), "user": self.user}

    # -------------------------------------------------------------------------- the hub
    def start(self) -> None:
        """The hub up (``lakehub up --detach`` through the tests' launcher), the user and their
        token, and the ``datascience`` environment built (or reused)."""
        print(f"  LakeHub: starting a hub in {self.hub.data_dir} ...", flush=True)
        t = time.perf_counter()
        self.started = True  # from here on, close() runs ``lakehub down``
        self.hub.up(timeout=900)
        self.info["up_seconds"] = time.perf_counter() - t
        self.hub.add_user(self.user)
        self.token = self.hub.token(self.user)
        self.direct = f"http://127.0.0.1:{self.hub.runtime()['ports']['api']}"
        self.api = httpx.Client(
            base_url=f"{self.front}{B.API}",
            headers={"Authorization": f"token {self.token}"},
            timeout=60,
        )
        print(
            f"  LakeHub: up in {self.info['up_seconds']:.0f} s; environments in {self.envs}",
            flush=True,
        )
        self.info["environments"] = self.wait_environments()

    def wait_environments(self) -> dict[str, Any]:
        """Wait until ``datascience`` is usable and no build is queued or running (a build
        beside the measurements would take their CPU), printing each change; bounded."""
        t0 = time.perf_counter()
        seen: dict[str, str] = {}
        usable_at: float | None = None
        with self.hub.admin_http() as c:
            while True:
                elapsed = time.perf_counter() - t0
                r = c.get("/environments")
                r.raise_for_status()
                envs = {e["name"]: e for e in r.json()}
                for name, e in envs.items():
                    state = e["status"] + (f": {e['progress']}" if e["progress"] else "")
                    if seen.get(name) != state:
                        seen[name] = state
                        print(f"    {elapsed:5.0f} s  environment {name}: {state}", flush=True)
                ds = envs[SERVING_ENV]
                if ds["status"] == "failed" and not ds["usable"]:
                    log = c.get(f"/environments/{SERVING_ENV}/log").text[-2000:]
                    raise RuntimeError(f"the {SERVING_ENV} environment failed to build:\n{log}")
                if ds["usable"] and usable_at is None:
                    usable_at = elapsed
                busy = sorted(n for n, e in envs.items() if e["status"] in ("queued", "building"))
                out = {
                    "usable_after_s": usable_at,
                    "idle_after_s": elapsed,
                    "states": seen,
                    "still_building": busy,
                    "contents": ds.get("highlights", []),
                }
                if usable_at is not None and not busy:
                    return out
                if elapsed > ENV_TIMEOUT:
                    if usable_at is None:
                        raise RuntimeError(
                            f"the {SERVING_ENV} environment is not usable after "
                            f"{ENV_TIMEOUT:.0f} s: {seen}"
                        )
                    print(
                        f"  LakeHub: still building {', '.join(busy)} after {ENV_TIMEOUT:.0f} s; "
                        "measuring anyway (the builds take CPU from the measurements)",
                        flush=True,
                    )
                    return out
                time.sleep(1)

    # -------------------------------------------------------------------------- the model
    def register(self, model: Any) -> int:
        """``model`` logged with MLflow's client to the hub's tracking server (on the control
        plane's own port, as a notebook logs it) and registered as ``iris``; its version."""
        import mlflow
        from mlflow.models import infer_signature
        from sklearn.datasets import load_iris

        x, _ = load_iris(return_X_y=True)
        os.environ["MLFLOW_TRACKING_URI"] = f"{self.direct}{PREFIX}/mlflow"
        os.environ["MLFLOW_TRACKING_TOKEN"] = self.token
        said = io.StringIO()  # MLflow's client prints the run's URL and the version it made
        try:
            with contextlib.redirect_stdout(said), contextlib.redirect_stderr(said):
                mlflow.set_experiment("serving-bench")
                with mlflow.start_run():
                    info = mlflow.sklearn.log_model(
                        model,
                        name="model",
                        signature=infer_signature(x, model.predict(x)),
                        input_example=x[:3],
                        serialization_format="cloudpickle",
                        registered_model_name=MODEL,
                    )
        except BaseException:
            print(said.getvalue(), end="", flush=True)
            raise
        return int(info.registered_model_version)

    def move_alias(self, version: int) -> None:
        from mlflow import MlflowClient

        MlflowClient().set_registered_model_alias(MODEL, ALIAS, str(version))

    # -------------------------------------------------------------------------- the endpoint
    def headers(self) -> dict[str, str]:
        return {**JSON_HEADERS, "Authorization": f"Bearer {self.token}"}

    def url(self, base: str) -> str:
        return f"{base}{PREFIX}/{self.path}{INFER_PATH}"

    def endpoint(self) -> dict[str, Any] | None:
        assert self.api is not None
        r = self.api.get(f"/endpoints/{MODEL}")
        if r.status_code == 404:
            return None
        r.raise_for_status()
        ep: dict[str, Any] = r.json()
        return ep

    def replicas(self) -> list[int]:
        """The pids of the hub's replica processes (their command line names its data dir)."""
        return [
            pid
            for pid, cmd in B.leftovers(str(self.hub.data_dir))
            if "lakehub.singleuser.serve" in cmd
        ]

    def deploy(self) -> float:
        """``POST /api/endpoints``, then the benchmark's request through the front door every
        50 ms until it is answered 200: the seconds from the deploy request to that answer.
        Then, not timed, until the endpoint says ``serving``."""
        assert self.api is not None
        body = {"model": f"{MODEL}@{ALIAS}", "replicas": 1}
        t0 = time.perf_counter()
        r = self.api.post("/endpoints", json=body)
        if r.status_code != 201:
            raise RuntimeError(f"the deploy was answered {r.status_code}: {r.text[:500]}")
        self.path = r.json()["path"]
        url, check = self.url(self.front), t0 + 1
        with httpx.Client(timeout=30) as c:
            while True:
                with contextlib.suppress(httpx.HTTPError):
                    if c.post(url, content=BODY, headers=self.headers()).status_code == 200:
                        took = time.perf_counter() - t0
                        break
                now = time.perf_counter()
                if now >= check:
                    ep = self.endpoint()
                    if ep is not None and ep["status"] == "failed":
                        raise RuntimeError(f"the deploy failed: {ep['message']}")
                    check = now + 1
                if now - t0 > DEPLOY_TIMEOUT:
                    raise RuntimeError(f"no answer from {url} {DEPLOY_TIMEOUT:.0f} s after deploy")
                time.sleep(0.05)

        def serving() -> dict[str, Any] | None:
            ep = self.endpoint()
            return ep if ep is not None and ep["status"] == "serving" else None

        ep = B.wait_until(serving, DEPLOY_TIMEOUT, 0.2)
        if ep is None:
            raise RuntimeError(f"the endpoint answers but does not say serving: {self.endpoint()}")
        self.info["endpoint"] = {k: ep[k] for k in ("path", "version", "replicas", "size")}
        return took

    def undeploy(self) -> None:
        """``DELETE`` the endpoint and wait until its replica's process is gone."""
        assert self.api is not None
        r = self.api.delete(f"/endpoints/{MODEL}")
        if r.status_code not in (204, 404):
            raise RuntimeError(f"deleting the endpoint was answered {r.status_code}: {r.text}")
        if not B.wait_until(lambda: not self.replicas(), 60, 0.1):
            raise RuntimeError(f"replicas outlived their endpoint: {self.replicas()}")

    def deploy_times(self, runs: int) -> list[float]:
        """``runs`` deploys of version 1, each from nothing (the previous one deleted, its
        replica gone); the last one stays for the measurements."""
        took: list[float] = []
        for i in range(runs):
            if i:
                self.undeploy()
            took.append(self.deploy())
            print(
                f"  LakeHub: deploy {i + 1}/{runs}: first answer {took[-1]:.2f} s after request",
                flush=True,
            )
        return took

    def ailib_deploy_times(self) -> dict[str, float]:
        """Each AI library model deployed in turn (trained on its sample as the user, registered,
        served): seconds from ``POST /api/ailib/<name>/deploy`` to the first 200 of its
        endpoint for its input example (``/invocations``); the endpoints are removed after."""
        from lakehub.ailib import templates

        assert self.api is not None
        took: dict[str, float] = {}
        for name, template in templates().items():
            example = json.loads(template.example().to_json(orient="split", index=False))
            url = f"{self.direct}{PREFIX}/serving/{self.user}/ailib-{name}/invocations"
            t0 = time.perf_counter()
            r = self.api.post(f"/ailib/{name}/deploy", json={})
            if r.status_code != 202:
                raise RuntimeError(f"deploying {name} was answered {r.status_code}: {r.text}")

            def answered(name: str = name, url: str = url, example: Any = example) -> bool:
                mine = next(t for t in self.api.get("/ailib").json() if t["name"] == name)  # type: ignore[union-attr]
                if mine["training"]["state"] == "failed":
                    raise RuntimeError(f"{name}: {mine['training']['message']}")
                if mine["training"]["state"] != "serving":
                    return False
                got = httpx.post(
                    url, json={"dataframe_split": example}, headers=self.headers(), timeout=30
                )
                return got.status_code == 200

            if not B.wait_until(answered, DEPLOY_TIMEOUT, 0.2):
                raise RuntimeError(f"{name} did not answer in {DEPLOY_TIMEOUT:.0f} s")
            took[name] = time.perf_counter() - t0
            print(f"  LakeHub: AI library {name}: first answer {took[name]:.1f} s after request")
            self.api.delete(f"/endpoints/ailib-{name}")
        return took

    # -------------------------------------------------------------------------- redeploy
    def redeploy_under_load(self, wrk: str, target: Target) -> dict[str, Any]:
        """wrk at c=8 against ``target`` while version 2 (a tree of depth 2) is registered,
        ``champion`` moved to it and the endpoint told to serve ``iris@champion`` again. The
        load goes on until version 2 serves and the old replica's process has exited (it
        drains first), then 1 s more, and lasts at least :data:`REDEPLOY_SECONDS`; wrk is then
        stopped with SIGINT, which makes it report."""
        from sklearn.datasets import load_iris
        from sklearn.tree import DecisionTreeClassifier

        assert self.api is not None
        before = self.endpoint()
        if before is None or before["status"] != "serving":
            raise RuntimeError(f"the endpoint is not serving before the redeploy: {before}")
        old = set(self.replicas())
        x, y = load_iris(return_X_y=True)
        second = DecisionTreeClassifier(max_depth=2, random_state=0).fit(x, y)
        cmd = wrk_command(wrk, target, Path(target.info["script"]), REDEPLOY_C, REDEPLOY_LIMIT)
        switched: float | None = None
        drained: float | None = None
        failed: str | None = None
        v2: int | None = None
        t_reg = t_patch = 0.0
        t0 = time.perf_counter()
        load = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            time.sleep(1)
            t_reg = time.perf_counter()
            v2 = self.register(second)
            self.move_alias(v2)
            t_patch = time.perf_counter()
            r = self.api.patch(f"/endpoints/{MODEL}", json={"model": f"{MODEL}@{ALIAS}"})
            if not r.is_success:
                raise RuntimeError(f"the PATCH was answered {r.status_code}: {r.text[:500]}")
            while switched is None and time.perf_counter() - t_patch < DEPLOY_TIMEOUT:
                ep = self.endpoint()
                assert ep is not None
                if ep["version"] == v2 and ep["status"] == "serving":
                    switched = time.perf_counter()
                elif ep["rollouts"] and ep["rollouts"][0]["state"] == "failed":
                    failed = ep["rollouts"][0]["message"] or ep["message"]
                    break
                else:
                    time.sleep(0.25)
            if switched is not None and B.wait_until(lambda: not old & set(self.replicas()), 60):
                drained = time.perf_counter()
                time.sleep(max(1.0, t0 + REDEPLOY_SECONDS - drained))
        finally:
            ended_alone = load.poll() is not None  # the load ran out before the end above
            if not ended_alone:
                load.send_signal(signal.SIGINT)
            try:
                out, err = load.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                load.kill()
                out, err = load.communicate()
        if load.returncode != 0:
            raise RuntimeError(f"wrk exited with {load.returncode}: {err or out}")
        s = B.parse_wrk(out)
        after = self.endpoint()
        assert after is not None
        answer = httpx.post(self.url(self.direct), content=BODY, headers=self.headers(), timeout=30)
        return {
            "c": REDEPLOY_C,
            "seconds": s["seconds"],
            "requests": s["requests"],
            "rps": s["rps"],
            "p50_ms": s["p50_ms"],
            "p99_ms": s["p99_ms"],
            "failed": s["errors"],
            "http_errors": s["http_errors"],
            "socket_errors": s["socket_errors"],
            "from_version": before["version"],
            "to_version": v2,
            "register_seconds": t_patch - t_reg,
            "switch_seconds": None if switched is None else switched - t_patch,
            # from the PATCH until the old replica's process had exited
            "old_replica_gone_s": None if drained is None else drained - t_patch,
            "load_ended_early": ended_alone,
            "rollout_failed": failed,
            "after": {k: after[k] for k in ("version", "status", "ready_replicas", "message")},
            "answer_after": {
                "status": answer.status_code,
                "version": answer.headers.get("x-lakehub-version"),
                "body": answer.text[:300],
            },
            "stdout": out,
        }

    # -------------------------------------------------------------------------- cleanup
    def close(self) -> None:
        """The endpoint deleted, the hub down, its processes gone and the user's unix account
        (made for the replicas) removed; raises with whatever went wrong on the way."""
        problems: list[str] = []
        if self.api is not None:
            if self.path:
                try:
                    self.undeploy()
                except (httpx.HTTPError, RuntimeError) as err:
                    problems.append(f"deleting the endpoint: {err}")
            self.api.close()
        for key in ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_TOKEN"):
            os.environ.pop(key, None)
        if self.started:
            problems += self.hub.down()
        problems += [f"left running: {p}" for p in B.reap(str(self.hub.data_dir), wait=10)]
        account = f"lh-{self.user}"
        with contextlib.suppress(KeyError):
            pwd.getpwnam(account)
            done = subprocess.run(["userdel", account], capture_output=True, text=True, timeout=30)
            if done.returncode != 0:
                problems.append(f"userdel {account}: {done.stderr.strip()}")
        if problems:
            raise RuntimeError("; ".join(problems))


def lakehub_targets(args: argparse.Namespace, model: Any, tmp: Path) -> list[Target]:
    """LakeHub's side: a hub in ``tmp`` (through the tests' launcher, ``tests/hubs.py``), one
    regular user, ``model`` registered with MLflow's client and deployed as the endpoint
    ``iris`` (``iris@champion``, 1 replica) ``--runs`` times to time the deploy, and two
    targets for the same request (:data:`BODY`, with the user's token):

    * "LakeHub, front door": the endpoint through the hub's proxy, as from outside;
    * "LakeHub, direct": the same path on the control plane's own port, as notebooks and jobs
      reach it.

    The front door's ``cleanup`` deletes the endpoint and stops the hub; the direct target
    carries the redeploy under load (:meth:`LakeHubSide.redeploy_under_load`)."""
    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "ERROR")  # read when mlflow is imported
    side = LakeHubSide(tmp)
    try:
        side.start()
        t = time.perf_counter()
        version = side.register(model)
        side.move_alias(version)
        side.info["register_seconds"] = time.perf_counter() - t
        side.info["registered_version"] = version
        side.info["deploy_seconds"] = side.deploy_times(args.runs)
        if args.ailib:
            side.info["ailib_deploy_seconds"] = side.ailib_deploy_times()
    except BaseException:
        side.close()
        raise
    headers = side.headers()
    front = Target(FRONT_LABEL, side.url(side.front), dict(headers), BODY, side.close, side.info)
    direct = Target(DIRECT_LABEL, side.url(side.direct), dict(headers), BODY)
    direct.redeploy = lambda wrk: side.redeploy_under_load(wrk, direct)
    return [front, direct]


# ---------------------------------------------------------------------------------- wrk
def lua_string(s: str) -> str:
    if "]==]" in s:
        raise ValueError("cannot quote for Lua")
    return f"[==[{s}]==]"


def wrk_script(t: Target, root: Path, n: int) -> Path:
    lines = ['wrk.method = "POST"', f"wrk.body = {lua_string(t.body.decode())}"]
    # spaces inside the brackets: "headers[[" would open a Lua long string
    lines += [f"wrk.headers[ {lua_string(k)} ] = {lua_string(v)}" for k, v in t.headers.items()]
    path = root / f"wrk-{n}.lua"
    path.write_text("\n".join(lines) + "\n")
    return path


def wrk_command(wrk: str, t: Target, script: Path, c: int, seconds: int) -> list[str]:
    return [
        wrk,
        f"-t{min(c, 2)}",
        f"-c{c}",
        f"-d{seconds}s",
        "--latency",
        "-s",
        str(script),
        t.url,
    ]


def run_wrk(wrk: str, t: Target, script: Path, c: int, seconds: int) -> dict[str, Any]:
    cmd = wrk_command(wrk, t, script, c, seconds)
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    if done.returncode != 0:
        raise RuntimeError(f"wrk exited with {done.returncode}: {done.stderr or done.stdout}")
    return {**B.parse_wrk(done.stdout), "stdout": done.stdout}


# ---------------------------------------------------------------------------------- report
def med(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def report(
    targets: list[Target],
    samples: dict[str, dict[int, list[dict[str, Any]]]],
    args: Any,
    redeploy: dict[str, Any] | None = None,
) -> list[str]:
    """The tables, one per concurrency, the ratio lines, LakeHub's deploy time and its redeploy
    under load; the lines also go to the results."""
    out: list[str] = []
    lakehub = [t.label for t in targets if t.label.startswith("LakeHub")]
    for c in CONCURRENCY:
        rows = []
        for t in targets:
            runs = samples[t.label][c]
            rps = [s["rps"] for s in runs]
            rows.append(
                [
                    t.label,
                    f"{med(rps):,.0f} ({min(rps):,.0f}-{max(rps):,.0f})",
                    B.fmt(med([s["p50_ms"] for s in runs]), digits=2),
                    B.fmt(med([s["p99_ms"] for s in runs]), digits=2),
                    str(sum(s["errors"] for s in runs)),
                ]
            )
        out.append(
            f"c={c} (wrk: {min(c, 2)} thread(s), {c} connection(s), "
            f"{args.seconds} s x {args.runs} run(s))"
        )
        out.append(
            B.table(
                [
                    "target",
                    "req/s median (min-max)",
                    "p50 ms (median)",
                    "p99 ms (median)",
                    "non-2xx+errors",
                ],
                rows,
            )
        )

        def stat(label: str, key: str, c: int = c) -> float:
            return med([s[key] for s in samples[label][c]])

        for label in lakehub:
            out.append(
                f"  {label} / {MLSERVER_LABEL}: "
                f"{B.fmt(B.ratio(stat(label, 'rps'), stat(MLSERVER_LABEL, 'rps')))}x req/s, "
                f"{B.fmt(B.ratio(stat(label, 'p99_ms'), stat(MLSERVER_LABEL, 'p99_ms')))}x p99; "
                f"/ {BARE_LABEL}: "
                f"{B.fmt(B.ratio(stat(label, 'rps'), stat(BARE_LABEL, 'rps')))}x req/s"
            )
        if FRONT_LABEL in lakehub and DIRECT_LABEL in lakehub:
            extra = stat(FRONT_LABEL, "p50_ms") - stat(DIRECT_LABEL, "p50_ms")
            out.append(
                f"  front-door overhead at p50: {extra:+.2f} ms "
                f"({FRONT_LABEL} p50 - {DIRECT_LABEL} p50)"
            )
        if not lakehub:
            out.append(
                f"  {MLSERVER_LABEL} / {BARE_LABEL}: "
                f"{B.fmt(B.ratio(stat(MLSERVER_LABEL, 'rps'), stat(BARE_LABEL, 'rps')))}x req/s "
                "(no LakeHub target)"
            )
        out.append("")
    deploys: list[float] = next(
        (t.info["deploy_seconds"] for t in targets if "deploy_seconds" in t.info), []
    )
    if deploys:
        out.append(
            f"deploy time, request to first answer (iris, 1 replica, {len(deploys)} run(s)): "
            f"median {med(deploys):.2f} s ({min(deploys):.2f}-{max(deploys):.2f})"
        )
    ailib: dict[str, float] = next(
        (t.info["ailib_deploy_seconds"] for t in targets if "ailib_deploy_seconds" in t.info), {}
    )
    if ailib:
        out.append("deploy time, request to first answer, per AI library model (trained on its")
        out.append("sample, registered, served; one at a time):")
        out += [f"  {name:<26} {s:6.1f} s" for name, s in ailib.items()]
        out.append(f"  median {med(list(ailib.values())):.1f} s")
    if redeploy is not None:
        switch = redeploy["switch_seconds"]
        out.append(
            f"redeploy under load (c={redeploy['c']}, {redeploy['seconds']:.0f} s): "
            f"{redeploy['requests']:,} requests, {redeploy['failed']} failed, version "
            f"{redeploy['from_version']} -> {redeploy['after']['version']} in "
            + (f"{switch:.1f} s" if switch is not None else "(no switch)")
        )
    return out


# ---------------------------------------------------------------------------------- main
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--runs", type=int, default=3, help="repetitions of every measurement")
    ap.add_argument("--seconds", type=int, default=5, help="length of one wrk measurement")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    ap.add_argument(
        "--no-ailib",
        dest="ailib",
        action="store_false",
        help="skip timing the AI library's ten deploys (about 2-3 minutes)",
    )
    args = ap.parse_args()
    if min(args.runs, args.seconds) < 1:
        ap.error("--runs and --seconds must be >= 1")
    wrk = B.wrk_binary()
    B.install_sigterm()
    started = time.perf_counter()
    info = B.host_info()
    info["other_load"] = B.other_load_note()
    root = B.bench_root("serving")
    marker = str(root)
    problems: list[str] = []
    targets: list[Target] = []
    samples: dict[str, dict[int, list[dict[str, Any]]]] = {}
    res: dict[str, Any] = {
        "benchmark": "serving",
        "host": info,
        "args": vars(args),
        "request": {"path": INFER_PATH, "body": BODY.decode(), "expected": EXPECTED},
        "wrk": subprocess.run([wrk, "--version"], capture_output=True, text=True).stdout.split(
            "\n"
        )[0],
    }
    try:
        print(f"serving benchmark: data in {root}", flush=True)
        model, predictions = train_model()
        res["model"] = {"kind": "DecisionTreeClassifier(random_state=0)", "trained_on": "iris"}
        targets.append(bare_target(root, model))
        targets.append(mlserver_target(root, predictions))
        targets += lakehub_targets(args, model, root)
        for t in targets:
            t.info["answer"] = check_answer(t)
            t.info["script"] = str(wrk_script(t, root, len(samples)))
            samples[t.label] = {c: [] for c in CONCURRENCY}
            print(f"  {t.label}: {t.url} answers {json.dumps(t.info['answer'])}", flush=True)
        for t in targets:  # warm-up, not measured; wrk's request must be answered as httpx's was
            warm = run_wrk(wrk, t, Path(t.info["script"]), 8, WARMUP_SECONDS)
            if warm["errors"]:
                raise SystemExit(f"{t.label}: wrk's warm-up had errors:\n{warm['stdout']}")
        step = 0
        for i in range(args.runs):
            for c in CONCURRENCY:
                for k in range(len(targets)):
                    t = targets[(step + k) % len(targets)]
                    s = run_wrk(wrk, t, Path(t.info["script"]), c, args.seconds)
                    samples[t.label][c].append(s)
                    if s["errors"]:
                        problems.append(f"{t.label}, c={c}, run {i + 1}: {s['errors']} errors")
                step += 1
            print(f"  run {i + 1}/{args.runs} done", flush=True)
        for t in targets:
            if t.redeploy is None:
                continue
            print(f"  {t.label}: redeploy under load ...", flush=True)
            rd = res["redeploy"] = t.redeploy(wrk)
            if rd["failed"]:
                problems.append(f"redeploy under load: {rd['failed']} failed requests")
            if rd["rollout_failed"] or rd["switch_seconds"] is None:
                problems.append(f"redeploy: version {rd['to_version']} did not serve: {rd}")
            elif rd["old_replica_gone_s"] is None:
                problems.append("redeploy: the old replica was still running after 60 s")
            if rd["load_ended_early"]:
                problems.append("redeploy: the load ended before the redeploy did")
            answer = rd["answer_after"]
            if answer["status"] != 200 or answer["version"] != str(rd["to_version"]):
                problems.append(f"redeploy: the answer after it is not version 2's: {answer}")
    finally:
        for t in reversed(targets):
            try:
                t.cleanup()
            except Exception as err:  # noqa: BLE001 (report it, clean up the rest)
                problems.append(f"cleanup of {t.label}: {err}")
        problems += B.reap(marker, wait=5)
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    res["targets"] = [
        {"label": t.label, "url": t.url, "headers": sorted(t.headers), **t.info} for t in targets
    ]
    res["samples"] = {
        label: {str(c): runs for c, runs in by_c.items()} for label, by_c in samples.items()
    }
    lines = report(targets, samples, args, res.get("redeploy"))
    res["report"] = lines
    print()
    bare = next(t for t in targets if t.label == BARE_LABEL)
    ml = next(t for t in targets if t.label == MLSERVER_LABEL)
    print(
        f"{BARE_LABEL}: uvicorn {bare.info['uvicorn']}, fastapi {bare.info['fastapi']}, "
        f"loop {bare.info['loop']}, http {bare.info['http']}; {MLSERVER_LABEL}: scikit-learn "
        f"{ml.info['sklearn']}, loop {ml.info['loop']}, http {ml.info['http']}, "
        "parallel_workers 0, debug off (no access log), venv "
        f"{'reused' if ml.info['build']['reused'] else 'built'} "
        f"(build took {ml.info['build']['seconds']:.0f} s)"
    )
    lake = next((t for t in targets if t.label == FRONT_LABEL), None)
    if lake is not None:
        envs = lake.info["environments"]
        print(
            f"LakeHub: hub up in {lake.info['up_seconds']:.0f} s, then {SERVING_ENV} usable after "
            f"{envs['usable_after_s']:.0f} s and every environment built after "
            f"{envs['idle_after_s']:.0f} s (in {lake.info['environments_dir']}), "
            f"model registered in {lake.info['register_seconds']:.1f} s; endpoint "
            f"{lake.info['endpoint']['path']}, version {lake.info['endpoint']['version']}, "
            f"{lake.info['endpoint']['replicas']} replica of size {lake.info['endpoint']['size']}"
        )
    print()
    print("\n".join(lines))
    path = B.write_results("serving", res)
    print(f"results: {path}")
    B.print_footer(started, info, problems, "problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
