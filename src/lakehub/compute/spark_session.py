"""``lakehub.compute.spark()``: a SparkSession on your own standalone cluster, lake included.

The driver's JVM starts while the control plane starts the cluster (both take seconds). The
cluster's secret never reaches a command line: the JVM is launched without it and the session's
configuration is set through the gateway. ``s3a://`` and ``s3://`` paths reach the lake with your
own keys (the filesystem cache is off, so keys never cross sessions).
"""

from __future__ import annotations

import importlib.util
import os
import socket
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

if TYPE_CHECKING:
    from lakehub.client import Client

# the jars that give Spark ``s3a://`` (inside sagemaker_pyspark; see docs/howto/spark.md)
LAKE_JARS = ("hadoop-aws-3.3.1.jar", "aws-java-sdk-bundle-1.11.901.jar")
# hadoop-aws 3.3 reads these as plain numbers (Hadoop 3.5's defaults say "60s")
S3A_NUMBERS = {
    "fs.s3a.threads.keepalivetime": "60",
    "fs.s3a.connection.establish.timeout": "30000",
    "fs.s3a.connection.timeout": "200000",
    "fs.s3a.multipart.purge.age": "86400",
}


# class-data archives of an environment's JVMs, one per role (made by lakehub.compute.spark_cds)
ROLES = ("master", "worker", "driver", "executor", "connect")
QUIET = "-Xlog:cds=off -Xlog:cds+dynamic=off"  # a mismatch is not an error: nothing to say


def archive(env: Path | str, role: str) -> Path:
    """Where environment ``env`` keeps the archive of ``role``."""
    return Path(env) / "share" / "lakehub-cds" / f"{role}.jsa"


def java_options(env: Path | str, role: str) -> str:
    """The JVM options that map ``role``'s archive of ``env`` ('' when there is none)."""
    path = archive(env, role)
    return f"-XX:SharedArchiveFile={path} -Xshare:auto {QUIET}" if path.is_file() else ""


def executor_options(env: Path | str) -> dict[str, str]:
    """The executors' JVM options: environment ``env``'s class-data archive, if it has one."""
    options = java_options(env, "executor")
    return {"spark.executor.extraJavaOptions": options} if options else {}


CONNECT_SERVER = "org.apache.spark.sql.connect.service.SparkConnectServer"


def connect_argv(spark_home: Path, props: Path) -> list[str]:
    """How a Spark Connect server is launched: ``spark-submit`` with its settings in a file."""
    submit = str(Path(spark_home) / "bin" / "spark-submit")
    return [submit, "--class", CONNECT_SERVER, "--properties-file", str(props), "spark-internal"]


def connect_server_conf(
    host: str, port: int, ui_port: int, token: str, secret: str, python: str, scratch: Path
) -> dict[str, str]:
    """A Spark Connect server's own settings, bound to ``host``: its gRPC port and the token a
    client must send, its driver's RPC secret, its UI, its Python and its scratch directory."""
    return {
        "spark.authenticate": "true",
        "spark.authenticate.secret": secret,
        # Spark's RPC here carries the executor's fetches from its own driver, over loopback:
        # authenticated (SASL), not encrypted. With AES, the driver's side of a new connection
        # loaded a cipher class while the executor that opened it held the class loader it
        # fetched for: a task hung 120 s, on some cold starts under load (a thread dump showed it)
        "spark.network.crypto.enabled": "false",
        "spark.driver.host": host,
        "spark.driver.bindAddress": host,
        "spark.ui.port": str(ui_port),
        "spark.connect.grpc.binding.address": host,
        "spark.connect.grpc.binding.port": str(port),
        "spark.connect.authenticate.token": token,
        "spark.pyspark.python": python,
        "spark.local.dir": str(scratch),
    }


def local_jars() -> list[str]:
    """The s3a jars beside this interpreter's pyspark (from the sagemaker_pyspark package)."""
    spec = importlib.util.find_spec("sagemaker_pyspark")
    if spec is None or not spec.submodule_search_locations:
        return []
    base = Path(next(iter(spec.submodule_search_locations))) / "jars"
    return [str(base / j) for j in LAKE_JARS if (base / j).exists()]


def lake_conf(endpoint: str, key: str, secret: str, region: str = "us-east-1") -> dict[str, str]:
    """Spark settings for ``s3a://`` (and ``s3://``) with one user's keys."""
    s3a = "org.apache.hadoop.fs.s3a.S3AFileSystem"
    conf = {
        "fs.s3a.endpoint": endpoint,
        "fs.s3a.access.key": key,
        "fs.s3a.secret.key": secret,
        "fs.s3a.endpoint.region": region,
        "fs.s3a.path.style.access": "true",
        "fs.s3a.connection.ssl.enabled": str(endpoint.startswith("https")).lower(),
        "fs.s3a.aws.credentials.provider": "org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider",
        "fs.s3a.impl": s3a,
        "fs.s3.impl": s3a,
        "fs.s3a.impl.disable.cache": "true",
        "fs.s3.impl.disable.cache": "true",
        **S3A_NUMBERS,
    }
    return {f"spark.hadoop.{k}": v for k, v in conf.items()}


def _local_address(master: str) -> str:
    """The address of this machine facing the master (where executors call the driver)."""
    url = urlparse(master)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect((url.hostname or "127.0.0.1", url.port or 7077))
        return str(s.getsockname()[0])


def _wait_for_master(master: str, timeout: float = 120) -> None:
    url = urlparse(master)
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((url.hostname or "", url.port or 7077), timeout=1):
                return
        except OSError as err:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"the Spark master {master} does not answer: {err}; see "
                    "lakehub.compute.clusters()"
                ) from None
            time.sleep(0.2)


def start_jvm(jars: list[str], conf: dict[str, str]) -> None:
    """Launch the driver's JVM (once per process) with the lake jars and no secret."""
    from pyspark import SparkConf, SparkContext

    if SparkContext._gateway is not None:
        return
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")  # the driver's UI binds here
    launch = SparkConf(loadDefaults=False)
    if jars:
        launch.set("spark.driver.extraClassPath", ":".join(jars))
    # the classes a driver of this environment loads, mapped from its archive (when it has one)
    archived = java_options(sys.prefix, "driver")
    if archived:
        launch.set("spark.driver.extraJavaOptions", archived)
    for key in ("spark.driver.memory", "spark.driver.extraJavaOptions"):
        if key in conf:
            launch.set(key, conf[key])
    SparkContext._ensure_initialized(conf=launch)


def connect_info(
    hub: Client,
    workers: int,
    cores: float,
    memory: str | int,
    name: str | None,
    idle_timeout: float | None,
    timeout: float = 180,
    connect: bool = False,
) -> dict[str, Any]:
    """Reuse a running cluster of yours (``name``, else one of this shape and kind) or start
    one; then its connection details (the secret included: owner only)."""
    from lakehub.client import LakeHubError

    mine = [
        c
        for c in hub.request("GET", "/api/compute")
        if c["kind"] == "spark" and c["status"] in ("starting", "running")
    ]
    if name is not None:
        found = [c for c in mine if c["name"] == name]
        if not found:
            raise LakeHubError(404, f"you have no running Spark cluster named {name!r}")
    else:
        from lakehub.sizes import parse_size

        size = memory if isinstance(memory, int) else parse_size(memory)
        found = [
            c
            for c in mine
            if (c["workers"], c["cores"], c["memory"]) == (workers, cores, size)
            and not c["detail"].get("server")
            and bool(c["detail"].get("connect")) == connect
        ]
    if not found:
        found = [
            hub.request(
                "POST",
                "/api/compute/spark",
                json={
                    "workers": workers,
                    "cores": cores,
                    "memory": memory,
                    "idle_timeout": idle_timeout,
                    "connect": connect,
                },
            )
        ]
    name = found[0]["name"]
    deadline = time.monotonic() + timeout
    while found[0]["status"] != "running":  # it starts in the background
        if found[0]["status"] == "failed":
            why = found[0]["detail"].get("reason", "see the hub log")
            raise LakeHubError(500, f"Spark cluster {name} failed to start: {why}")
        if time.monotonic() > deadline:
            raise LakeHubError(504, f"Spark cluster {name} did not start in {timeout:.0f} s")
        time.sleep(0.1)
        found = [c for c in hub.request("GET", "/api/compute") if c["name"] == name] or [
            {"status": "failed", "detail": {"reason": "it was stopped"}}
        ]
    info: dict[str, Any] = hub.request("GET", f"/api/compute/spark/{name}/connect")
    return info


def session(
    workers: int | None = None,
    cores: float | None = None,
    memory: str | int | None = None,
    name: str | None = None,
    idle_timeout: float | None = None,
    client: Client | None = None,
    app_name: str | None = None,
    conf: dict[str, Any] | None = None,
) -> Any:
    from pyspark.sql import SparkSession

    conf = {k: str(v) for k, v in (conf or {}).items()}
    env = os.environ
    result: dict[str, Any] = {}
    shape = (workers, cores, memory)
    if (
        name is None
        and shape == (None, None, None)
        and env.get("SPARK_MASTER_URL")
        and env.get("LAKEHUB_SPARK_SECRET")
    ):
        # a notebook server with its own cluster, asked for no other shape: everything is in
        # its environment (a shape or a name asks for a cluster of that shape, or that name)
        info: dict[str, Any] = {
            "master": env["SPARK_MASTER_URL"],
            "secret": env["LAKEHUB_SPARK_SECRET"],
            "name": env.get("LAKEHUB_SPARK_CLUSTER", ""),
            "python": env.get("PYSPARK_PYTHON", ""),
            "jars": local_jars(),
            "cores": int(env.get("LAKEHUB_SPARK_CORES", "1")),
            "memory_mb": int(env.get("LAKEHUB_SPARK_MEMORY_MB", "1024")),
        }
        creds = {
            "endpoint": env.get("AWS_ENDPOINT_URL", ""),
            "key": env.get("AWS_ACCESS_KEY_ID", ""),
            "secret": env.get("AWS_SECRET_ACCESS_KEY", ""),
        }
        start_jvm(info["jars"], conf)
        _wait_for_master(info["master"])  # it starts with the server, in the background
    else:
        from lakehub.client import LakeHubError, default

        hub = default(client)

        def ask() -> None:
            try:
                result["info"] = connect_info(
                    hub,
                    2 if workers is None else workers,
                    1 if cores is None else cores,
                    "2g" if memory is None else memory,
                    name,
                    idle_timeout,
                )
                c = hub.lake.credentials()
                result["creds"] = {
                    "endpoint": c.endpoint_url,
                    "key": c.access_key_id,
                    "secret": c.secret_access_key,
                }
            except BaseException as err:  # re-raised in the caller's thread
                result["error"] = err

        asking = threading.Thread(target=ask, name="lakehub-spark-start", daemon=True)
        asking.start()
        start_jvm(local_jars(), conf)  # meanwhile: the driver's JVM
        asking.join()
        if "error" in result:
            raise result["error"]
        info, creds = result["info"], result["creds"]
        if "master" not in info:
            raise LakeHubError(
                409,
                f"Spark cluster {info['name']} is a Spark Connect cluster (one process, no "
                "master for a driver here to join): open it with lakehub.compute.spark("
                f"connect=True, name={info['name']!r})",
            )
    return _build(SparkSession, info, creds, app_name, conf)


def remote_session(
    workers: int | None,
    cores: float | None,
    memory: str | int | None,
    name: str | None,
    idle_timeout: float | None,
    client: Client | None,
    conf: dict[str, Any],
) -> Any:
    """A Spark Connect session on a cluster of yours with a Spark Connect server (started with
    one if none of this shape has it). The token goes in the gRPC call's metadata only."""
    from lakehub.client import LakeHubError, default

    # pyspark's client (pandas, pyarrow, grpc: a second's import) loads while the cluster starts
    loading = threading.Thread(target=_load_connect_client, name="lakehub-spark-import")
    loading.start()
    info = connect_info(
        default(client),
        2 if workers is None else workers,
        1 if cores is None else cores,
        "2g" if memory is None else memory,
        name,
        idle_timeout,
        connect=True,
    )
    if "remote" not in info:
        raise LakeHubError(409, f"Spark cluster {info['name']} has no Spark Connect server")
    loading.join()
    from pyspark.sql.connect.client import DefaultChannelBuilder
    from pyspark.sql.connect.session import SparkSession as RemoteSession

    channel = DefaultChannelBuilder(info["remote"])
    channel.set("token", info["token"])
    builder = RemoteSession.builder.channelBuilder(channel)
    for key, value in conf.items():
        builder = builder.config(key, str(value))
    return builder.getOrCreate()


def _build(
    spark_session: Any,
    info: dict[str, Any],
    creds: dict[str, str],
    app_name: str | None,
    conf: dict[str, str],
) -> Any:
    from pyspark import SparkContext

    active = SparkContext._active_spark_context
    if active is not None and active.master != info["master"]:
        active.stop()  # one SparkContext per process: the new cluster replaces the old one
    here = _local_address(info["master"])
    settings = {
        "spark.authenticate": "true",
        "spark.authenticate.secret": info["secret"],
        "spark.network.crypto.enabled": "true",
        "spark.driver.host": here,
        "spark.driver.bindAddress": here,
        "spark.executor.cores": str(info["cores"]),
        "spark.executor.memory": f"{max(512, int(info['memory_mb'] * 0.8))}m",
        **({"spark.executor.extraClassPath": ":".join(info["jars"])} if info["jars"] else {}),
        **({"spark.pyspark.python": info["python"]} if info.get("python") else {}),
        **(executor_options(Path(info["python"]).parent.parent) if info.get("python") else {}),
        **lake_conf(creds["endpoint"], creds["key"], creds["secret"]),
        **conf,
    }
    builder = spark_session.builder.master(info["master"]).appName(
        app_name or f"lakehub-{info.get('name') or 'spark'}"
    )
    for key, value in settings.items():
        builder = builder.config(key, value)
    return builder.getOrCreate()


def _load_connect_client() -> None:
    """Import Spark Connect's client ahead; an error shows where it is imported for use."""
    import contextlib

    with contextlib.suppress(Exception):
        import pyspark.sql.connect.session  # noqa: F401
