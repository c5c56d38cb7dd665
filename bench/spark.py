"""Benchmark: Spark on LakeHub against bare Spark, in one run.

1. Request to first result. LakeHub: a fresh Python process of the ``spark`` environment (as a
   notebook's kernel) runs
   ``lakehub.compute.spark(workers=1, memory="1g", client=...)`` then ``range(1000).count()``;
   timed from the process's launch to the printed result (the cluster is stopped between runs,
   so every run starts one: master, worker, driver and executor JVMs). Anchor: the same Python
   process launches a bare ``spark-class`` master, waits until its port answers, launches a
   worker, and builds a ``SparkSession`` against it (no secret, no lake), the same count. A third
   side runs LakeHub's with the environment's class-data archives moved aside, a fourth asks for
   a Spark Connect session (``connect=True``: the cluster starts with a Spark Connect server, the
   client starts no JVM), a fifth asks for the warm pool's shape (one worker of 1g: the hub
   keeps one such Connect cluster started, ``compute_pool_spark``) and gets it from the pool.
   The cold Connect side asks for 1.25g per worker, a shape the pool does not hold. Runs
   alternate; each starts once the pool holds a ready cluster (its refill does not compete).
2. A decision tree on a KDD-Cup-like table of network connections (41 features of realistic
   types and a label, ``--rows`` rows, Parquet in the user's bucket): read from the lake with
   s3a, index the categorical columns, assemble, fit ``pyspark.ml``'s
   ``DecisionTreeClassifier(maxDepth=8)`` on the user's cluster. Anchor: the same pipeline in
   ``local[2]`` mode on the same files read from local disk. Rows/s of read + fit.

    .venv/bin/python bench/spark.py [--runs 3] [--rows 1000000] [--keep]
"""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib as B  # noqa: E402

FIRST_LAKEHUB = """
import sys, time
t0 = float(sys.argv[1])
import lakehub, lakehub.compute
hub = lakehub.connect(sys.argv[2], sys.argv[3])
connect = sys.argv[4] in ("connect", "warm")
memory = "1g" if sys.argv[4] in ("classic", "warm") else "1280m"
s = lakehub.compute.spark(workers=1, cores=1, memory=memory, client=hub, connect=connect)
n = s.range(1000).count()
print("RESULT", n, time.time() - t0, flush=True)
s.stop()
"""

FIRST_ANCHOR = """
import os, socket, subprocess, sys, time
t0 = float(sys.argv[1])
home = os.path.dirname(__import__("importlib.util").util.find_spec("pyspark").origin)
def port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); return s.getsockname()[1]
mp, ui = port(), port()
env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1", "SPARK_HOME": home}
cls = f"{home}/bin/spark-class"
m = subprocess.Popen([cls, "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                      "--port", str(mp), "--webui-port", str(ui)], env=env,
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
while True:
    try:
        socket.create_connection(("127.0.0.1", mp), 0.5).close(); break
    except OSError:
        time.sleep(0.05)
w = subprocess.Popen([cls, "org.apache.spark.deploy.worker.Worker", "--host", "127.0.0.1",
                      "--cores", "1", "--memory", "1g", f"spark://127.0.0.1:{mp}"], env=env,
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
from pyspark.sql import SparkSession
s = SparkSession.builder.master(f"spark://127.0.0.1:{mp}").config(
    "spark.executor.memory", "800m").getOrCreate()
n = s.range(1000).count()
print("RESULT", n, time.time() - t0, flush=True)
s.stop()
for p in (w, m):
    os.killpg(p.pid, 15)
"""

TREE = """
import sys, time, json
mode, path = sys.argv[1], sys.argv[2]
from pyspark.ml import Pipeline
from pyspark.ml.classification import DecisionTreeClassifier
from pyspark.ml.feature import StringIndexer, VectorAssembler
if mode == "lakehub":
    import lakehub, lakehub.compute
    hub = lakehub.connect(sys.argv[3], sys.argv[4])
    s = lakehub.compute.spark(workers=1, cores=2, memory="3g", client=hub)
else:
    from pyspark.sql import SparkSession
    s = SparkSession.builder.master("local[2]").config("spark.driver.memory", "3g").getOrCreate()
t0 = time.time()
df = s.read.parquet(path).cache()
rows = df.count()
cats = ["protocol_type", "service", "flag"]
feats = [c for c in df.columns if c not in cats + ["label"]]
stages = [StringIndexer(inputCol=c, outputCol=c + "_i") for c in cats + ["label"]]
stages.append(VectorAssembler(inputCols=feats + [c + "_i" for c in cats], outputCol="features"))
stages.append(DecisionTreeClassifier(labelCol="label_i", featuresCol="features", maxDepth=8,
                                     maxBins=80))
model = Pipeline(stages=stages).fit(df)
took = time.time() - t0
print("RESULT", json.dumps({"rows": rows, "seconds": took,
                            "depth": model.stages[-1].depth}), flush=True)
s.stop()
"""


def kdd_table(rows: int, seed: int = 7) -> Any:
    """Connections shaped like KDD Cup 99: 41 features (counts, bytes, flags, rates; three
    categorical) and a label (normal or one of the attack kinds), with a learnable signal."""
    import numpy as np
    import pyarrow as pa

    rng = np.random.default_rng(seed)
    services = np.array([f"svc{i}" for i in range(66)] + ["http", "smtp", "ftp_data", "private"])
    labels = np.array(["normal", "smurf", "neptune", "back", "satan", "ipsweep", "portsweep"])
    y = rng.choice(len(labels), rows, p=[0.2, 0.4, 0.3, 0.03, 0.03, 0.02, 0.02])
    proto = np.where(y == 1, "icmp", rng.choice(["tcp", "udp", "icmp"], rows, p=[0.8, 0.15, 0.05]))
    cols: dict[str, Any] = {
        "duration": rng.exponential(30, rows).astype("int32") * (y == 0),
        "protocol_type": proto,
        "service": services[np.where(y == 2, 69, rng.integers(0, len(services), rows))],
        "flag": rng.choice(
            ["SF", "S0", "REJ", "RSTR", "SH", "RSTO", "S1", "S2", "S3", "OTH", "RSTOS0"], rows
        ),
        "src_bytes": (rng.lognormal(6, 2, rows) * np.where(y == 1, 4, 1)).astype("int64"),
        "dst_bytes": (rng.lognormal(7, 2, rows) * (y == 0)).astype("int64"),
    }
    for name in ("land", "logged_in", "is_host_login", "is_guest_login"):
        cols[name] = (rng.random(rows) < np.where(y == 0, 0.7, 0.05)).astype("int8")
    for name in (
        "wrong_fragment",
        "urgent",
        "hot",
        "num_failed_logins",
        "num_compromised",
        "root_shell",
        "su_attempted",
        "num_root",
        "num_file_creations",
        "num_shells",
        "num_access_files",
        "num_outbound_cmds",
    ):
        cols[name] = rng.poisson(0.1, rows).astype("int16")
    for name in ("count", "srv_count", "dst_host_count", "dst_host_srv_count"):
        cols[name] = (rng.integers(0, 512, rows) * np.where(y > 0, 1, 0.1)).astype("int32")
    for name in (
        "serror_rate",
        "srv_serror_rate",
        "rerror_rate",
        "srv_rerror_rate",
        "same_srv_rate",
        "diff_srv_rate",
        "srv_diff_host_rate",
        "dst_host_same_srv_rate",
        "dst_host_diff_srv_rate",
        "dst_host_same_src_port_rate",
        "dst_host_srv_diff_host_rate",
        "dst_host_serror_rate",
        "dst_host_srv_serror_rate",
        "dst_host_rerror_rate",
        "dst_host_srv_rerror_rate",
    ):
        base = np.where(y == 2, 0.9, 0.1)
        cols[name] = np.clip(base + rng.normal(0, 0.1, rows), 0, 1).astype("float32")
    cols["label"] = labels[y]
    assert len(cols) == 42  # 41 features and the label
    return pa.table(cols)


def timed(argv: list[str], env: dict[str, str], timeout: float = 600) -> tuple[float, str]:
    t0 = time.time()
    proc = subprocess.run(
        [*argv[:3], str(t0), *argv[3:]], capture_output=True, text=True, env=env, timeout=timeout
    )
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT")), None)
    if line is None:
        raise RuntimeError(f"no result: {proc.stderr[-1500:]}")
    return float(line.split()[-1]), line


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    B.install_sigterm()
    started = time.perf_counter()
    info = B.host_info()
    info["other_load"] = B.other_load_note()
    root = B.bench_root("spark")
    pool = {"compute_pool_spark": "1", "compute_pool_spark_workers": "1"}
    hub = B.bench_hub(root, compute_pool_spark_memory=str(1 << 30), **pool)
    env = hub.env
    problems: list[str] = []
    results: dict[str, Any] = {"host": info}
    admin = user = None
    try:
        hub.up(timeout=900)
        front = hub.url
        admin = hub.admin_http()

        def usable() -> bool:  # an answer during start-up may not be the API's JSON yet
            try:
                found = admin.get("/environments").json()
            except (httpx.HTTPError, ValueError):
                return False
            return any(e["name"] == "spark" and e["usable"] for e in found)

        ready = B.wait_until(usable, 1800, 1)
        if not ready:
            raise RuntimeError("the spark environment was not built")
        admin.post("/users", json={"name": "bench"}).raise_for_status()
        token = admin.post("/users/bench/tokens", json={"note": "bench"}).json()["token"]
        user = httpx.Client(
            base_url=f"{front}/services/lakehub/api",
            timeout=60,
            headers={"Authorization": f"token {token}"},
        )
        py = sys.executable

        def stop_all() -> None:
            for c in user.get("/compute").json():
                user.delete(f"/compute/{c['kind']}/{c['name']}")

        # the driver as in a notebook: the spark environment's own Python, whose JVMs map the
        # class-data archives made with it; "no archives" moves them aside for that run only
        from lakehub.server.config import load_settings  # its envs_dir, shared or its own

        spark_env = (load_settings(data_dir=hub.data_dir).envs_dir / "spark").resolve()
        archives = spark_env / "share" / "lakehub-cds"
        aside = archives.with_name("lakehub-cds.aside")
        has_archives = archives.is_dir()
        sides: dict[str, list[float]] = {
            "lakehub": [],
            "no archives": [],
            "connect": [],
            "connect warm": [],
            "anchor": [],
        }

        def pool_ready() -> bool:
            found = admin.get("/compute-pool").json()
            return any(c["status"] == "running" for c in found)

        for i in range(args.runs):
            order = [s for s in sides if has_archives or s != "no archives"]
            for side in order if i % 2 == 0 else order[::-1]:
                if not B.wait_until(pool_ready, 600, 1):
                    problems.append(f"run {i + 1} {side}: the pool held no ready cluster")
                if side == "anchor":
                    took, _ = timed([py, "-c", FIRST_ANCHOR], env)
                else:
                    if side == "no archives":
                        archives.rename(aside)
                    try:
                        argv = [str(spark_env / "bin" / "python"), "-c", FIRST_LAKEHUB]
                        how = {"connect": "connect", "connect warm": "warm"}.get(side, "classic")
                        took, _ = timed([*argv, front, token, how], env)
                    finally:
                        if aside.exists():
                            aside.rename(archives)
                    stop_all()
                sides[side].append(took)
                print(f"  first result run {i + 1} {side}: {took:.2f} s", flush=True)
        print("\nRequest to first result (s), workers=1, the driver in the spark environment")
        bare = ("bare spark-class + session", sides["anchor"])
        pairs = [
            (("LakeHub lakehub.compute.spark()", sides["lakehub"]), bare),
            (("LakeHub, Spark Connect (no JVM in the client)", sides["connect"]), bare),
            (("LakeHub, Spark Connect from the warm pool", sides["connect warm"]), bare),
            (
                ("LakeHub with class-data archives", sides["lakehub"]),
                ("LakeHub without them", sides["no archives"]),
            ),
        ]
        cols = ["median", "min", "max"]
        for (label_a, a), (label_b, b) in pairs:
            if a and b:
                print(B.table(["", "n", *cols], B.stats_rows(label_a, a, label_b, b, cols)))
        results["first_result"] = sides

        # the decision tree ---------------------------------------------------------------
        import pyarrow.parquet as pq

        creds = user.get("/lake/credentials").json()
        s3 = B.s3_for(creds)
        table = kdd_table(args.rows)
        local = root / "kdd"
        local.mkdir()
        parts = 4
        step = -(-args.rows // parts)
        for p in range(parts):
            buf = io.BytesIO()
            pq.write_table(table.slice(p * step, step), buf)
            (local / f"part-{p}.parquet").write_bytes(buf.getvalue())
            s3.put_object(Bucket=creds["bucket"], Key=f"kdd/part-{p}.parquet", Body=buf.getvalue())
        size = sum(f.stat().st_size for f in local.iterdir())
        print(
            f"\nKDD-like table: {args.rows:,} rows x {table.num_columns} columns, "
            f"{size / 2**20:.0f} MiB of Parquet in {parts} files"
        )
        tree: dict[str, list[float]] = {"lakehub": [], "anchor": []}
        for i in range(args.runs):
            for side in ("lakehub", "anchor") if i % 2 == 0 else ("anchor", "lakehub"):
                argv = (
                    [py, "-c", TREE, side, f"s3a://{creds['bucket']}/kdd/", front, token]
                    if side == "lakehub"
                    else [py, "-c", TREE, side, str(local)]
                )
                proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=1800)
                line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT")), "")
                if not line:
                    problems.append(f"tree {side}: {proc.stderr[-800:]}")
                    continue
                import json

                got = json.loads(line.split(" ", 1)[1])
                tree[side].append(got["rows"] / got["seconds"])
                print(
                    f"  tree run {i + 1} {side}: {got['seconds']:.1f} s, "
                    f"{got['rows'] / got['seconds']:,.0f} rows/s, depth {got['depth']}",
                    flush=True,
                )
        stop_all()
        print("\nDecision tree, read + fit (rows/s; higher is better)")
        print(
            B.table(
                ["", "n", "median", "min", "max"],
                B.stats_rows(
                    "LakeHub cluster, s3a from the lake",
                    tree["lakehub"],
                    "local[2], local files",
                    tree["anchor"],
                    ["median", "min", "max"],
                ),
            )
        )
        results["tree_rows_per_s"] = tree
        results["rows"] = args.rows
    finally:
        for client in (admin, user):
            if client is not None:
                client.close()
        problems += B.hub_down(hub, root, args.keep, wait=10)
        B.write_results("spark", results)
        B.print_footer(started, info, problems, "problems")


if __name__ == "__main__":
    main()
