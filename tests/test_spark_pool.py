"""Spark Connect, and its warm clusters (issue 20): a request of the pool's shape takes a started
cluster, with its owner's keys bound at hand-over; the pool refills; the next user finds nothing
of the previous one (each pooled cluster serves one user, as an account of its own, deleted
when it stops); a Connect cluster whose last job is older than its idle timeout is reclaimed.
The pool's fill is a Connect cluster's cold start; the server's settings for an owner (not the
pool) are checked without a JVM."""

from __future__ import annotations

import io
import os
import pwd
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from endpoints_kit import remove_accounts
from hubs import s3_for
from inproc import API_PREFIX, InProc, serve_platform
from lakehub.server.compute.spark_procs import alive

ROOT = os.geteuid() == 0
SEEN: dict[str, Any] = {}  # what the first test leaves for the second (ann's cluster)
SALES = pa.table({"region": ["north", "south", "north"] * 20, "amount": [1.0, 2.0, 3.0] * 20})

CLIENT = """
import secrets, sys, lakehub, lakehub.compute
from pyspark.sql.connect.client import DefaultChannelBuilder
from pyspark.sql.connect.session import SparkSession
hub = lakehub.connect(sys.argv[1], sys.argv[2])
spark = lakehub.compute.spark(workers=1, memory="1g", connect=True, idle_timeout=15, client=hub)
(cluster,) = hub.request("GET", "/api/compute")
print("cluster", cluster["name"], cluster["status"])
mine, other = sys.argv[3], sys.argv[4]
totals = spark.read.parquet(f"s3a://{mine}/sales/").groupBy("region").sum("amount")
totals.write.mode("overwrite").parquet(f"s3a://{mine}/totals/")
print("rows", spark.read.parquet(f"s3a://{mine}/totals/").count())
try:
    spark.read.parquet(f"s3a://{other}/sales/").count()
    print("LEAK")
except Exception as err:
    print("denied", "403" in str(err) or "AccessDenied" in str(err) or "Forbidden" in str(err))
remote = hub.request("GET", f"/api/compute/spark/{cluster['name']}/connect")["remote"]
for token in (secrets.token_urlsafe(32), None):
    channel = DefaultChannelBuilder(remote)
    if token:
        channel.set("token", token)
    try:
        SparkSession.builder.channelBuilder(channel).create().range(3).count()
        print("stranger OPEN")
    except Exception as err:
        print("stranger refused", "UNAUTHENTICATED" in str(err).upper())
"""


@pytest.fixture(scope="module")
def pool() -> Iterator[InProc]:
    """A platform keeping one warm Spark Connect cluster of one worker of 1 GiB."""
    with serve_platform(
        compute_engines={"spark": "spark-standalone"},  # no Dask gateway runs here
        compute_pool_spark=1,
        compute_pool_spark_workers=1,
        compute_pool_spark_memory=1 << 30,
    ) as ip:
        envs = ip.platform.environments
        envs.sync_builtins()
        envs.build_next("spark")  # the test environments' finished build, reused
        assert envs.path("spark"), envs.log_text("spark")[-2000:]
        engine = ip.platform.compute["spark"]
        engine.reap_every = 1.0
        engine.open()
        try:
            yield ip
        finally:
            engine.close()
            for cluster in engine.list():
                engine.stop(cluster.owner, cluster.name)
            for rec in engine.pool_records():
                engine._kill(rec)
            from lakehub.server.leftovers import remove_pool_accounts

            remove_pool_accounts(ip.data_dir)
            remove_accounts(ip.data_dir / "homes")


def pooled(ip: InProc, other_than: str = "") -> dict[str, Any]:
    """The pool's ready cluster (not ``other_than``), waited for."""

    def ready() -> dict[str, Any] | None:
        with ip.admin_http() as c:
            r = c.get("/compute-pool")
            assert r.status_code == 200, r.text
        found = [p for p in r.json() if p["status"] == "running" and p["name"] != other_than]
        return found[0] if found else None

    found: dict[str, Any] = ip.wait(ready, 240, "a ready cluster in the pool")
    return found


def user_with_sales(ip: InProc, prefix: str) -> tuple[str, dict[str, str]]:
    name = f"{prefix}{secrets.token_hex(2)}"
    ip.quick_user(name)
    creds = ip.credentials(name)
    buf = io.BytesIO()
    pq.write_table(SALES, buf)
    s3_for(creds).put_object(
        Bucket=creds["bucket"], Key="sales/part-0.parquet", Body=buf.getvalue()
    )
    return name, creds


def record(ip: InProc, owner: str, name: str) -> dict[str, Any]:
    import json

    path = ip.data_dir / "run" / "compute" / "spark" / f"{owner}--{name}.json"
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def processes_of(uid: int) -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and _uid(p) == uid]


def _uid(p: Path) -> int:
    try:
        return p.stat().st_uid
    except OSError:
        return -1


def showing(secret: str, pids: list[int]) -> list[int]:
    """The processes among ``pids`` whose command line or environment holds ``secret``."""
    found = []
    for pid in pids:
        for part in ("cmdline", "environ"):
            try:
                if secret.encode() in Path(f"/proc/{pid}/{part}").read_bytes():
                    found.append(pid)
            except OSError:
                continue
    return found


def files_holding(folder: Path, secret: str) -> list[Path]:
    found = []
    for path in folder.rglob("*"):
        try:
            small = path.is_file() and path.stat().st_size < 1 << 20
            if small and secret.encode() in path.read_bytes():
                found.append(path)
        except OSError:
            continue
    return found


def nice_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])


def test_a_request_of_the_pools_shape_gets_a_warm_cluster_with_its_owners_keys(
    pool: InProc,
) -> None:
    ip = pool
    warm = pooled(ip)
    line = next(ln for ln in ip.cli("compute", "pool").stdout.splitlines() if warm["name"] in ln)
    assert line.split()[0] == "spark" and line.split()[2] == "running", line
    assert f"{warm['workers']} x {warm['cores']:g} cores" in line, line
    ann, ann_creds = user_with_sales(ip, "ann")
    bob, bob_creds = user_with_sales(ip, "bob")
    argv = [sys.executable, "-c", CLIENT, ip.url, ip.token(ann)]
    done = subprocess.run(
        [*argv, ann_creds["bucket"], bob_creds["bucket"]],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    # the pooled cluster itself, running at once: nothing started for this request
    assert f"cluster {warm['name']} running" in done.stdout, done.stdout
    assert "rows 2" in done.stdout and "denied True" in done.stdout, done.stdout
    assert done.stdout.count("stranger refused True") == 2, done.stdout
    rec = record(ip, ann, warm["name"])
    assert rec["owner"] == ann and rec["pool"]
    with ip.admin_http() as c:
        assert warm["name"] not in {p["name"] for p in c.get("/compute-pool").json()}
    assert warm["name"] not in ip.cli("compute", "pool").stdout
    # ann's keys: in the cluster's private file, on no command line, in no environment
    keys = Path(rec["work"]) / "lake.keys"
    assert ann_creds["access_key_id"] in keys.read_text()
    assert keys.stat().st_mode & 0o777 == 0o600
    pids = [p for p in rec["pids"] if Path(f"/proc/{p}").exists()]
    assert len(pids) == 1 and rec["local"]  # one process: the Connect server, its executor inside
    # its heap: the driver's 1 GiB and its worker's executor's 4/5 of 1 GiB (not spark-submit's
    # 512 MiB for daemons, which a Connect server is to it)
    assert b"\0-Xmx1843m\0" in Path(f"/proc/{pids[0]}/cmdline").read_bytes()
    # it mapped the class-data archive its environment's build made for Connect servers
    assert "/share/lakehub-cds/connect.jsa" in Path(f"/proc/{pids[0]}/maps").read_text()
    # its UI (its driver's: the sessions' jobs) through the portal, for ann alone
    ui = f"{ip.platform.prefix}compute/spark/{warm['name']}/ui/jobs/"
    page = ip.browser_login(ann).get(ui)
    assert page.status_code == 200 and "Spark Jobs" in page.text, page.text[-500:]
    assert f"/compute/spark/{warm['name']}/ui/" in page.text  # its links lead back through it
    assert ip.browser_login(bob).get(ui).status_code == 404
    with ip.http(ann) as c:  # what a classic driver would join it with: nothing (no master)
        info = c.get(f"{API_PREFIX}/compute/spark/{warm['name']}/connect").json()
    assert "master" not in info and "secret" not in info, info
    assert info["remote"].startswith("sc://localhost:") and info["token"]
    assert not showing(ann_creds["secret_access_key"], processes_of(os.geteuid()) + pids)
    if ROOT:  # an account of the cluster's own, now at everyone's priority
        account = pwd.getpwnam(f"lh-{warm['name']}")
        assert keys.stat().st_uid == account.pw_uid
        assert all(Path(f"/proc/{p}").stat().st_uid == account.pw_uid for p in pids)
        assert {nice_of(p) for p in processes_of(account.pw_uid)} == {0}
    # another user gets neither the cluster nor its token
    with ip.http(bob) as c:
        r = c.get(f"{API_PREFIX}/compute/spark/{warm['name']}/connect")
        assert r.status_code == 404, r.text
        assert c.get(f"{API_PREFIX}/compute").json() == []
    SEEN.update(ann=ann, bob=bob, creds=ann_creds, rec=rec)
    SEEN["uid"] = pwd.getpwnam(f"lh-{warm['name']}").pw_uid if ROOT else -1


def test_the_pool_refills_and_the_next_user_finds_nothing_of_the_last(pool: InProc) -> None:
    ip = pool
    ann, bob, ann_creds, before = SEEN["ann"], SEEN["bob"], SEEN["creds"], SEEN["rec"]
    nxt = pooled(ip, other_than=before["name"])
    rec = ip.platform.compute["spark"]._record("", nxt["name"])
    home = Path(rec["home"])
    # nothing of ann's: no keys file yet, no file or process holding her keys
    assert not (Path(rec["work"]) / "lake.keys").exists()
    for secret in (ann_creds["access_key_id"], ann_creds["secret_access_key"]):
        assert not files_holding(home, secret)
        assert not showing(secret, [p for p in rec["pids"] if Path(f"/proc/{p}").exists()])
    if ROOT:
        account = pwd.getpwnam(f"lh-{nxt['name']}")
        assert account.pw_uid != SEEN["uid"]
        assert not files_holding(home, ann)  # not even her name
        assert {nice_of(p) for p in processes_of(account.pw_uid)} == {10}  # filling: low
    # bob's request takes it, at once, with his keys
    bob_creds = ip.credentials(bob)
    with ip.http(bob) as c:
        r = c.post(
            f"{API_PREFIX}/compute/spark",
            json={"workers": 1, "cores": 1, "memory": "1g", "connect": True},
        )
        assert r.status_code == 201, r.text
        assert (r.json()["name"], r.json()["status"]) == (nxt["name"], "running")
    keys = (Path(rec["work"]) / "lake.keys").read_text()
    assert bob_creds["access_key_id"] in keys and ann_creds["access_key_id"] not in keys
    # ann's session may stay open: her cluster is idle once its last job is 15 s old, then
    # reclaimed, and its processes, account and home go with it
    with ip.http(ann) as c:
        ip.wait(lambda: c.get(f"{API_PREFIX}/compute").json() == [], 120, "ann's reclaimed")
    ip.wait(lambda: not [p for p in before["pids"] if alive(p)], 30, "its processes gone")
    assert not Path(before["home"]).exists()
    if ROOT:
        with pytest.raises(KeyError):
            pwd.getpwnam(f"lh-{before['name']}")


def test_the_connect_servers_settings_for_an_owner_and_for_the_pool(tmp_path: Path) -> None:
    """The server's properties file: private; the owner's keys and a scratch folder of the
    owner's for a cluster started for them; no keys (a file the environment names, read later)
    for a pooled one."""
    from lakehub.server.compute.spark_connect import PROFILE_PROVIDER, connect_conf
    from lakehub.server.compute.spark_pool import pool_lake_env

    rec = {
        "name": "ann-abc123",
        "env": str(tmp_path / "env"),
        "spark_home": str(tmp_path / "env" / "pyspark"),
        "secret": secrets.token_urlsafe(16),
        "host": "127.0.0.1",
        "connect_port": 15002,
        "connect_ui_port": 4041,
        "connect_token": secrets.token_urlsafe(16),
        "work": str(tmp_path / "pool-1"),
        "endpoint": "http://127.0.0.1:8333",
        "workers": 2,
    }
    keys = {"AWS_ENDPOINT_URL": rec["endpoint"], "AWS_ACCESS_KEY_ID": "AKANN"}
    keys["AWS_SECRET_ACCESS_KEY"] = secrets.token_urlsafe(16)
    for lake, work in ((keys, tmp_path / "ann"), (pool_lake_env(rec), tmp_path / "pool-1")):
        work.mkdir()
        fd = os.open(work, os.O_RDONLY | os.O_DIRECTORY)
        try:
            path = connect_conf(work, None, rec, lake, 1, 1024, fd)
        finally:
            os.close(fd)
        assert path.stat().st_mode & 0o777 == 0o600
        props = dict(line.split(" ", 1) for line in path.read_text().splitlines())
        assert props["spark.connect.authenticate.token"] == rec["connect_token"]
        # one process: the workers' cores and their executors' memory (4/5 of 1 GiB) inside it
        assert props["spark.master"] == "local[2]"
        assert props["spark.driver.memory"] == f"{1024 + 2 * 819}m"
        assert props["spark.authenticate.secret"] == rec["secret"]
        assert (
            props["spark.driver.extraJavaOptions"].split()[0] == f"-Djava.io.tmpdir={work / 'tmp'}"
        )
        assert props["spark.local.dir"] == str(work / "tmp")
        provider = props["spark.hadoop.fs.s3a.aws.credentials.provider"]
        if lake is keys:
            assert props["spark.hadoop.fs.s3a.secret.key"] == keys["AWS_SECRET_ACCESS_KEY"]
            assert provider.endswith("SimpleAWSCredentialsProvider")
        else:
            assert "spark.hadoop.fs.s3a.secret.key" not in props
            assert "spark.hadoop.fs.s3a.access.key" not in props
            assert provider == PROFILE_PROVIDER


def test_a_link_planted_in_a_home_is_not_followed(pool: InProc, tmp_path: Path) -> None:
    """A user's ``~/.lakehub`` made a link to a folder that is not theirs: their cluster fails
    with a sentence saying why; the hub (root) neither chowns that folder nor writes in it."""
    ip = pool
    eve = f"eve{secrets.token_hex(2)}"
    ip.quick_user(eve)
    target = tmp_path / "not-eves"
    target.mkdir()
    home = ip.data_dir / "homes" / eve
    home.mkdir(parents=True, exist_ok=True)
    (home / ".lakehub").symlink_to(target)
    with ip.http(eve) as c:
        shape = {"workers": 1, "cores": 1, "memory": "512m"}  # not the pool's
        r = c.post(f"{API_PREFIX}/compute/spark", json=shape)
        assert r.status_code == 201, r.text

        def failed() -> dict[str, Any] | None:
            (cluster,) = c.get(f"{API_PREFIX}/compute").json()
            return cluster if cluster["status"] == "failed" else None

        cluster = ip.wait(failed, 60, "the cluster to fail")
    assert "is a link or a file, not a folder" in cluster["detail"]["reason"], cluster
    assert target.stat().st_uid == os.geteuid() and list(target.iterdir()) == []


def test_the_pool_is_shown_to_administrators_only(inproc: InProc, inproc_user: Any) -> None:
    """``GET /api/compute-pool``: a user is refused, so is a request without a token."""
    with inproc.http(inproc_user()) as c:
        r = c.get(f"{API_PREFIX}/compute-pool")
        assert r.status_code == 403, r.text
    assert inproc.http().get(f"{API_PREFIX}/compute-pool").status_code == 401
    with inproc.admin_http() as c:
        r = c.get("/compute-pool")
        assert r.status_code == 200 and isinstance(r.json(), list), r.text
    shown = inproc.cli("compute", "pool").stdout
    assert shown.strip() == "no cluster in the pool (its size: the setting compute_pool_spark)"
