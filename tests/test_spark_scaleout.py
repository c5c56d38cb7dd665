"""Scale-out: a Spark worker on another "host" (a network namespace this test creates, joined by
a veth pair with private addresses) joins a user's cluster, whose master listens on the host's
veth address, and computes. The namespace is always removed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import netns
from lakehub.compute.spark_session import _build, local_jars, start_jvm
from lakehub.server.compute.base import ClusterRequest, ComputeError
from lakehub.server.compute.spark_standalone import SparkEngine, pyspark_home
from lakehub.server.config import load_settings

VENV = Path(sys.prefix)  # this venv has pyspark and the s3a jars, as the spark environment


@pytest.fixture
def other_host() -> Iterator[tuple[str, str, str]]:
    """(namespace, host address, namespace address)."""
    why = netns.unusable()
    if why:
        pytest.skip(why)
    with netns.other_host("10.213") as host:
        yield host


def test_a_worker_in_another_network_namespace_joins_and_computes(
    other_host: tuple[str, str, str],
) -> None:
    ns, host_ip, ns_ip = other_host
    tmp = Path(tempfile.mkdtemp(prefix="lakehub-test-scaleout-", dir="/tmp"))
    settings = load_settings(data_dir=str(tmp / "data"), isolate_users=False)
    engine = SparkEngine(
        settings, lambda owner: {}, lambda *a: None, spark_env=lambda: VENV, host=host_ip
    )
    remote: subprocess.Popen[bytes] | None = None
    session = None
    try:
        cluster = engine.start("carol", ClusterRequest(workers=1, cores=1, memory=1 << 30))
        deadline = time.monotonic() + 180
        while engine.list("carol")[0].status == "starting" and time.monotonic() < deadline:
            time.sleep(0.2)
        assert engine.list("carol")[0].status == "running", engine.list("carol")
        info = engine.connect("carol", cluster.name)
        assert info["master"] == f"spark://{host_ip}:{info['master'].rsplit(':', 1)[1]}"
        # Spark Connect's client sends its token without TLS to localhost only: refused here
        with pytest.raises(ComputeError) as refused:
            engine.start("carol", ClusterRequest(workers=1, memory=1 << 30, connect=True))
        assert refused.value.status == 400 and "loopback only" in str(refused.value)
        props = settings.homes_dir / "carol" / ".lakehub" / "spark" / cluster.name / "spark.conf"
        home = pyspark_home(VENV)
        env = {
            **os.environ,
            "SPARK_HOME": str(home),
            "SPARK_LOCAL_IP": ns_ip,
            "SPARK_NO_DAEMONIZE": "1",
            "LAKEHUB_HUB_ID": str(settings.data_dir),
        }
        remote = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                ns,
                str(home / "bin" / "spark-class"),
                "org.apache.spark.deploy.worker.Worker",
                "--host",
                ns_ip,
                "--cores",
                "1",
                "--memory",
                "1g",
                "--work-dir",
                str(tmp / "remote-work"),
                "--properties-file",
                str(props),
                info["master"],
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        start_jvm(local_jars(), {})
        from pyspark.sql import SparkSession

        session = _build(
            SparkSession,
            info,
            {"endpoint": "", "key": "", "secret": ""},
            "scaleout",
            {"spark.executor.memory": "700m"},
        )
        sc = session.sparkContext
        where: set[str] = set()  # the addresses tasks ran at (each worker's SPARK_LOCAL_IP)
        deadline = time.monotonic() + 180
        while not {ns_ip, host_ip} <= where and time.monotonic() < deadline:
            where |= set(
                sc.parallelize(range(16), 16)
                .map(lambda _: os.environ.get("SPARK_LOCAL_IP", ""))
                .collect()
            )
            time.sleep(0.5)
        assert {ns_ip, host_ip} <= where, where
        assert sc.parallelize(range(1000), 8).sum() == 499500
    finally:
        if session is not None:
            session.stop()
        if remote is not None:
            os.killpg(remote.pid, 15)
            remote.wait(timeout=30)
        for c in engine.list():
            engine.stop(c.owner, c.name)
        shutil.rmtree(tmp, ignore_errors=True)
