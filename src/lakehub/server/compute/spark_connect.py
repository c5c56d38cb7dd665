"""Spark Connect in front of a user's Spark cluster: a server that holds the driver, so a notebook
gets a ``SparkSession`` over gRPC without a JVM of its own.

The server (``SparkConnectServer`` from the environment's pyspark, through ``spark-submit``) runs
as the cluster's owner with its executor inside it (a ``local[n]`` master: the cluster is this
one process), with the owner's lake keys and the cluster's ``spark.authenticate`` secret, bound
to the cluster's address. It answers only a client that
sends the cluster's Connect token (``spark.connect.authenticate.token``); the token, like the
secret and the keys, is written only to a properties file private to the owner, never to a
command line. Without TLS, Spark Connect's Python client sends a token only to ``localhost``:
clusters bound to another address (a scale-out) need TLS in front, which LakeHub does not add.
"""

from __future__ import annotations

import json
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lakehub.compute.spark_session import connect_server_conf, java_options, lake_conf
from lakehub.server.compute.spark_procs import Ids, lake_jars, private_subdir, write_private

# the AWS SDK's reader of a credentials file (the one ``AWS_CREDENTIAL_PROFILES_FILE`` names),
# read when S3A first needs keys, not before
PROFILE_PROVIDER = "com.amazonaws.auth.profile.ProfileCredentialsProvider"
DRIVER_MEMORY = 1 << 30


def connect_conf(
    work: Path,
    user: Ids | None,
    rec: dict[str, Any],
    lake: dict[str, str],
    cores: int,
    memory_mb: int,
    work_fd: int,
    ui_base: str = "",
) -> Path:
    """The server's settings, in a file private to the owner: its port and token, the owner's
    lake keys, its executor (inside it: a ``local[n]`` master with the workers' cores, the
    heap of :func:`heap_mb`; ``cores`` and ``memory_mb`` a worker's). ``work_fd``: ``work``,
    open (see :func:`.spark_procs.private_dir`). ``ui_base``: where its UI is reached through
    the front door (its links are made below it)."""
    env = Path(rec["env"])
    jars = lake_jars(Path(rec["spark_home"]).parent)
    scratch = work / "tmp"  # the driver's temporary files (Spark Connect's model cache too)
    private_subdir(work_fd, scratch.name, user)
    props = {
        "spark.master": f"local[{cores * rec['workers']}]",
        "spark.driver.memory": f"{heap_mb(rec, memory_mb)}m",
        "spark.app.name": connect_app(rec["name"]),
        **connect_server_conf(
            rec["host"],
            rec["connect_port"],
            rec["connect_ui_port"],
            rec["connect_token"],
            rec["secret"],
            str(env / "bin" / "python"),
            scratch,
        ),
        **lake_conf(
            lake.get("AWS_ENDPOINT_URL", ""),
            lake.get("AWS_ACCESS_KEY_ID", ""),
            lake.get("AWS_SECRET_ACCESS_KEY", ""),
        ),
    }
    if ui_base:
        props["spark.ui.proxyBase"] = ui_base
    if jars:
        props["spark.driver.extraClassPath"] = ":".join(jars)
    # not the machine's /tmp, which every user's server would share
    # its own class-data archive (the gRPC service, the planner), else the classic driver's
    archived = java_options(env, "connect") or java_options(env, "driver")
    props["spark.driver.extraJavaOptions"] = f"-Djava.io.tmpdir={scratch} {archived}".rstrip()
    if "AWS_CREDENTIAL_PROFILES_FILE" in lake:  # a pooled server: keys from a file, later
        for key in ("access.key", "secret.key"):
            del props[f"spark.hadoop.fs.s3a.{key}"]
        props["spark.hadoop.fs.s3a.aws.credentials.provider"] = PROFILE_PROVIDER
    conf = work / "connect.conf"
    write_private(conf, user, props, work_fd)
    return conf


def heap_mb(rec: dict[str, Any], memory_mb: int) -> int:
    """A one-process Connect cluster's heap: its driver's and its workers' executors' together
    (``memory_mb`` a worker's memory, of which its executor gets four fifths)."""
    return (DRIVER_MEMORY >> 20) + rec["workers"] * max(512, int(memory_mb * 0.8))


def connect_app(cluster: str) -> str:
    return f"lakehub-connect-{cluster}"


def last_job(host: str, ui_port: int, timeout: float = 2.0) -> float | None:
    """When the server's driver last ran a job: now while one runs, else the latest end (epoch
    seconds); 0 if it ran none; None if it does not answer."""
    base = f"http://{host}:{ui_port}/api/v1/applications"
    latest = 0.0
    try:
        with urllib.request.urlopen(base, timeout=timeout) as r:  # noqa: S310 (the cluster's own)
            apps = json.load(r)
        for app in apps:
            with urllib.request.urlopen(f"{base}/{app['id']}/jobs", timeout=timeout) as r:  # noqa: S310
                for job in json.load(r):
                    if job.get("status") == "RUNNING":
                        return time.time()
                    ended = job.get("completionTime")
                    if ended:  # "2026-12-06T08:01:25.123GMT"
                        when = datetime.strptime(ended, "%Y-%m-%dT%H:%M:%S.%fGMT")
                        latest = max(latest, when.replace(tzinfo=UTC).timestamp())
    except (OSError, ValueError, KeyError):
        return None
    return latest
