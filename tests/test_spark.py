"""Spark clusters per user against a real hub: the SDK, the lake through s3a, isolation, the
lifecycle (a killed worker, idle reclamation, a notebook's own cluster)."""

from __future__ import annotations

import io
import os
import pwd
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import lakehub
import lakehub.compute
from conftest import Hub, creds_of, s3_for
from kernel import Kernel
from lakehub.client import tls_context

API = "/services/lakehub/api"


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _maps(pid: int) -> str:
    """What process ``pid`` has mapped ('' once it is gone)."""
    try:
        return Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return ""


def _showing(marker: str) -> list[int]:
    """The processes whose command line shows ``marker`` (every account can read them)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if marker.encode() in cmdline.read_bytes():
                found.append(int(cmdline.parent.name))
        except OSError:
            continue
    return found


def _parent(pid: int) -> int:
    """The parent of process ``pid`` (0 once it is gone)."""
    try:  # the field after the command's closing parenthesis: state, then the parent's pid
        return int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[1])
    except (OSError, IndexError, ValueError):
        return 0


def _record(hub: Hub, owner: str, name: str) -> dict[str, Any]:
    import json

    path = hub.data_dir / "run" / "compute" / "spark" / f"{owner}--{name}.json"
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def _put_parquet(s3: Any, bucket: str, key: str, table: pa.Table) -> None:
    buf = io.BytesIO()
    pq.write_table(table, buf)
    s3.put_object(Bucket=bucket, Key=key, Body=buf.getvalue())


def _read_parquet_prefix(s3: Any, bucket: str, prefix: str) -> pa.Table:
    keys = [
        o["Key"]
        for o in s3.list_objects_v2(Bucket=bucket, Prefix=prefix)["Contents"]
        if o["Key"].endswith(".parquet")
    ]
    assert keys, f"nothing written under {prefix}"
    return pa.concat_tables(
        [
            pq.read_table(io.BytesIO(s3.get_object(Bucket=bucket, Key=k)["Body"].read()))
            for k in keys
        ]
    )


SALES = pa.table(
    {
        "region": ["north", "south", "north", "east", "south", "north"] * 50,
        "amount": [10.0, 20.0, 30.0, 5.0, 15.0, 1.0] * 50,
    }
)


# two people of this module, on the worker's hub
ALICE, BOB = f"alice{secrets.token_hex(2)}", f"bob{secrets.token_hex(2)}"


@pytest.fixture(scope="module")
def spark_hub(hub: Hub) -> Hub:
    hub.wait_environments("spark")
    return hub


@pytest.fixture(scope="module")
def alice(spark_hub: Hub) -> Iterator[dict[str, Any]]:
    """alice's session on her own two-worker cluster (idle after 20 s without an application)."""
    spark_hub.quick_user(ALICE)
    creds = creds_of(spark_hub, ALICE)
    _put_parquet(s3_for(creds), creds["bucket"], "sales/part-0.parquet", SALES)
    client = lakehub.connect(spark_hub.url, spark_hub.token(ALICE))
    t0 = time.monotonic()
    session = lakehub.compute.spark(workers=2, cores=1, memory="1g", idle_timeout=20, client=client)
    took = time.monotonic() - t0
    (cluster,) = client.request("GET", "/api/compute")
    yield {"session": session, "client": client, "creds": creds, "cluster": cluster, "took": took}
    session.stop()


def test_a_job_reads_the_users_parquet_and_writes_a_result_back(
    spark_hub: Hub, alice: dict[str, Any]
) -> None:
    spark, bucket = alice["session"], alice["creds"]["bucket"]
    cluster = alice["cluster"]
    assert cluster["kind"] == "spark" and cluster["status"] == "running"
    assert spark.sparkContext.master == cluster["address"]
    sales = spark.read.parquet(f"s3a://{bucket}/sales/")
    totals = sales.groupBy("region").sum("amount").withColumnRenamed("sum(amount)", "total")
    totals.write.mode("overwrite").parquet(f"s3a://{bucket}/totals/")
    result = _read_parquet_prefix(s3_for(alice["creds"]), bucket, "totals/").to_pydict()
    assert dict(zip(result["region"], result["total"], strict=True)) == {
        "north": 2050.0,
        "south": 1750.0,
        "east": 250.0,
    }
    # s3:// paths reach the lake the same way
    assert spark.read.parquet(f"s3://{bucket}/totals/").count() == 3
    # no secret on any command line (everyone can read them): the cluster's, the lake's
    with spark_hub.http(ALICE) as c:
        secret = c.get(f"{API}/compute/spark/{cluster['name']}/connect").json()["secret"]
    for value in (secret, alice["creds"]["secret_access_key"]):
        assert not (found := _showing(value)), f"processes {found} show a secret"
    # the executors ran as alice's account, on her cluster (not in this process)
    rec = _record(spark_hub, ALICE, cluster["name"])
    owner = Path(f"/proc/{rec['pids'][1]}").stat().st_uid
    assert pwd.getpwuid(owner).pw_name == (
        f"lh-{ALICE}" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name
    )
    # every JVM of the cluster mapped its role's class-data archive from the spark environment
    master, *workers = rec["pids"]
    mapped = [("master", _maps(master))] + [("worker", _maps(w)) for w in workers]
    # this cluster's executors: its workers' children (other tests' clusters may run beside it)
    executors = [p for p in _showing("CoarseGrainedExecutorBackend") if _parent(p) in workers]
    mapped += [("executor", m) for p in executors if (m := _maps(p))]
    assert [r for r, _ in mapped].count("executor") >= 1, "no executor found"
    for role, maps in mapped:
        assert f"/share/lakehub-cds/{role}.jsa" in maps, role


def test_another_user_gets_neither_the_secret_nor_the_cluster(
    spark_hub: Hub, alice: dict[str, Any]
) -> None:
    spark_hub.quick_user(BOB)
    name = alice["cluster"]["name"]
    with spark_hub.http(BOB) as c:
        r = c.get(f"{API}/compute/spark/{name}/connect")
        assert r.status_code == 404, r.text
        assert c.delete(f"{API}/compute/spark/{name}").status_code == 404
        assert c.get(f"{API}/compute").json() == []
    with spark_hub.http(ALICE) as c:
        r = c.get(f"{API}/compute/spark/{name}/connect")
        assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
        secret = r.json()["secret"]
        # the Spark UI through the front door, for its owner only
        ui = alice["cluster"]["dashboard_url"]
        assert ui.endswith(f"/services/lakehub/compute/spark/{name}/ui/")
        r = c.get(ui)
        assert r.status_code == 200 and "Spark Master at spark://" in r.text, r.text[:500]
    with spark_hub.http(BOB) as c:
        assert c.get(ui).status_code == 404
    # a driver without the secret that finds the master's address is refused at once (it
    # would retry for a minute: its first refusal is enough)
    intruder = subprocess.Popen(
        [sys.executable, "-c", INTRUDER, alice["cluster"]["address"]],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "SPARK_LOCAL_IP": "127.0.0.1"},
    )
    seen: list[str] = []
    refused = threading.Event()

    def read() -> None:
        assert intruder.stdout is not None
        for line in intruder.stdout:
            seen.append(line)
            if "Expected SaslMessage" in line or line.startswith("REFUSED"):
                refused.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        refused.wait(timeout=300)  # a JVM starting on a loaded machine takes minutes
    finally:
        intruder.kill()
        intruder.wait()
    out = "".join(seen)
    assert refused.is_set() and "RESULT" not in out, out[-3000:]
    # no secret in any log of the hub
    for path in (spark_hub.data_dir / "logs").rglob("*"):
        if path.is_file():
            assert secret not in path.read_text(errors="replace"), path


INTRUDER = """
import sys
from pyspark.sql import SparkSession
try:
    s = (SparkSession.builder.master(sys.argv[1]).appName("intruder")
         .config("spark.ui.enabled", "false").getOrCreate())
    print("RESULT", s.range(10).count(), flush=True)
except Exception as err:
    print("REFUSED", type(err).__name__, str(err)[:300], flush=True)
"""


def test_a_worker_killed_mid_job_is_survived(spark_hub: Hub, alice: dict[str, Any]) -> None:
    spark, name = alice["session"], alice["cluster"]["name"]
    rec = _record(spark_hub, ALICE, name)
    victim = rec["pids"][1]
    out: dict[str, Any] = {}

    def job() -> None:
        rdd = spark.sparkContext.parallelize(range(8), 8)
        out["sum"] = rdd.map(lambda x: (time.sleep(1.5), x)[1]).sum()

    t = threading.Thread(target=job)
    t.start()
    time.sleep(4)  # tasks are running on both workers
    os.kill(victim, signal.SIGKILL)
    t.join(timeout=180)
    assert out.get("sum") == 28
    (cluster,) = alice["client"].request("GET", "/api/compute")
    assert cluster["detail"]["workers_alive"] == 1
    assert "1 of 2 workers stopped" in cluster["detail"]["reason"]


def test_clusters_outlive_a_restart_of_the_control_plane(
    spark_hub: Hub, alice: dict[str, Any]
) -> None:
    api = spark_hub.runtime()["components"]["api"]
    os.kill(api["pid"], signal.SIGKILL)  # the supervisor starts it again
    spark_hub.wait(
        lambda: spark_hub.runtime()["components"]["api"]["pid"] != api["pid"],
        60,
        "the control plane to restart",
    )

    def answers() -> bool:
        try:
            return httpx.get(api["health_url"], verify=tls_context()).status_code == 200
        except httpx.TransportError:
            return False

    spark_hub.wait(answers, 90, "the control plane to answer")
    (cluster,) = alice["client"].request("GET", "/api/compute")
    assert (cluster["name"], cluster["status"]) == (alice["cluster"]["name"], "running")
    assert alice["session"].range(100).count() == 100  # the session never noticed


def test_an_idle_cluster_is_reclaimed_with_its_processes(
    spark_hub: Hub, alice: dict[str, Any]
) -> None:
    name = alice["cluster"]["name"]
    pids = _record(spark_hub, ALICE, name)["pids"]
    assert _alive(pids[0])
    alice["session"].stop()  # no application: idle from now on (timeout 20 s)
    spark_hub.wait(
        lambda: not alice["client"].request("GET", "/api/compute"),
        90,
        "the idle cluster to be reclaimed",
    )
    spark_hub.wait(lambda: not any(_alive(p) for p in pids), 30, "its processes to end")


def test_a_spark_notebook_gets_its_own_cluster_that_stops_with_it(
    spark_hub: Hub, alice: dict[str, Any]
) -> None:
    """bob's notebook in the spark environment: SPARK_MASTER_URL and the secret are in its
    environment, his own data is readable through his cluster and alice's is not."""
    creds = creds_of(spark_hub, BOB)
    _put_parquet(s3_for(creds), creds["bucket"], "mine/part-0.parquet", SALES)
    client = lakehub.connect(spark_hub.url, spark_hub.token(BOB))
    client.servers.start(environment="spark", size="medium", wait=120)
    (cluster,) = client.request("GET", "/api/compute")
    assert cluster["detail"]["server"] == ""
    k = Kernel(spark_hub.url, BOB, spark_hub.token(BOB))
    # spark() prints nothing while the JVM and the cluster start: minutes on a busy machine,
    # in a server held to its size's CPU quota
    k.ws.settimeout(480)
    out, err = k.run(
        NOTEBOOK.replace("BOB", creds["bucket"]).replace("ALICE", alice["creds"]["bucket"]),
        timeout=480,
    )
    assert err is None, err
    assert f"master {cluster['address']}" in out, out
    # the kernel's driver JVM (of the spark environment, as bob) mapped the driver's archive
    bob = pwd.getpwnam(f"lh-{BOB}").pw_uid if os.geteuid() == 0 else os.geteuid()
    drivers = [p for p in _showing("pyspark-shell") if Path(f"/proc/{p}").stat().st_uid == bob]
    assert drivers and all("/share/lakehub-cds/driver.jsa" in _maps(p) for p in drivers)
    assert "own 300" in out and "denied" in out and "LEAK" not in out, out
    # a shape asked for in the server is honoured: a cluster of that shape (1 GiB workers), not
    # the server's own (2 GiB)
    out, err = k.run(
        "wide = lakehub.compute.spark(workers=1, memory='1g', idle_timeout=30)\n"
        "print('wide', wide.sparkContext.master, wide.range(10).count())\n"
        "wide.stop()\n",
        timeout=480,
    )
    assert err is None, err
    wide = [c for c in client.request("GET", "/api/compute") if c["name"] != cluster["name"]]
    assert [(c["workers"], c["memory"]) for c in wide] == [(1, 2**30)], wide
    assert f"wide {wide[0]['address']} 10" in out, out
    client.request("DELETE", f"/api/compute/spark/{wide[0]['name']}")
    pids = _record(spark_hub, BOB, cluster["name"])["pids"]
    client.servers.stop()
    spark_hub.wait(lambda: not client.servers.list(), 60, "the server to stop")
    spark_hub.wait(lambda: not client.request("GET", "/api/compute"), 30, "its cluster to stop")
    assert not any(_alive(p) for p in pids)


NOTEBOOK = """
import os
import lakehub.compute
spark = lakehub.compute.spark()
print("master", spark.sparkContext.master)
print("own", spark.read.parquet("s3a://BOB/mine/").count())
try:
    spark.read.parquet("s3a://ALICE/sales/").count()
    print("LEAK")
except Exception as err:
    print("denied", "403" in str(err) or "AccessDenied" in str(err) or "Forbidden" in str(err))
spark.stop()
"""


def test_bad_requests_get_a_readable_4xx(spark_hub: Hub, alice: dict[str, Any]) -> None:
    with spark_hub.http(ALICE) as c:
        r = c.post(f"{API}/compute/spark", json={"workers": 0})
        assert r.status_code == 400 and "at least one worker" in r.json()["detail"]
        r = c.post(f"{API}/compute/spark", json={"workers": 1, "memory": "lots"})
        assert r.status_code == 400 and "memory" in r.json()["detail"]
        r = c.get(f"{API}/compute/spark/nosuch/connect")
        assert r.status_code == 404
    with httpx.Client(base_url=spark_hub.url) as anonymous:
        assert anonymous.get(f"{API}/compute").status_code == 401
