"""Class-data sharing archives for Spark's JVMs, made once per environment build and used by every
master, worker, executor and notebook driver started from that environment.

A Spark JVM spends its first seconds loading and verifying thousands of classes from the
environment's 280 jars. HotSpot maps the classes a JVM of the same class path loaded before from
an archive instead (``-XX:SharedArchiveFile``). ``python -m lakehub.compute.spark_cds`` (run by
the environment build, in the environment) makes one archive per role by running each once with
``-XX:ArchiveClassesAtExit``: a master, a worker, and one small application's driver and executor;
then a Spark Connect server (driver and executor in one JVM, as a user's Connect cluster runs)
with one query through the Connect client: its archive holds the gRPC service and the Connect
planner as well (by hand, its first result came ~1.7 s sooner than from the driver's archive).
The executor's archive is asked of it while it still runs (``jcmd <pid> VM.cds dynamic_dump``):
its worker stops it as the application ends and kills it if it has not exited soon after, which
left no archive when writing one took longer than that (a busy host).

An archive serves only a JVM of the same Java whose class path starts like the one it was made
with (the same environment); any other JVM ignores it (``-Xshare:auto``) and starts as before.
The archives are written by the account that builds the environment and are read-only to the
users' JVMs, so no user can place classes in another's.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(ready: Callable[[], bool], what: str, deadline: float) -> None:
    while not ready():
        if time.monotonic() > deadline:
            raise RuntimeError(f"no {what} within the time allowed")
        time.sleep(0.1)


def _gone(proc: subprocess.Popen[bytes]) -> bool:
    proc.poll()
    try:
        os.killpg(proc.pid, 0)
    except ProcessLookupError:
        return True
    return False


def _listens(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _executors(group: int) -> list[int]:
    """The Spark executors in process group ``group`` (a worker's)."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            pid = int(proc.name)
            if os.getpgid(pid) == group and b"Executor" in (proc / "cmdline").read_bytes():
                found.append(pid)
        except (OSError, ValueError):
            continue
    return found


def make(env: Path, timeout: float = 300.0) -> list[str]:
    """Make ``env``'s archives (this interpreter must be ``env``'s): start a master and a worker,
    run one application (SQL, an aggregation, Parquet written and read, Python workers), stop
    them, then a Spark Connect server with one query; each JVM writes the classes it loaded as it
    exits. Returns the roles made."""
    import pyspark
    from pyspark.sql import SparkSession

    from lakehub.compute.spark_session import QUIET, ROLES, archive, local_jars, start_jvm

    home = Path(pyspark.__file__ or "").parent
    final = archive(env, "master").parent
    final.parent.mkdir(parents=True, exist_ok=True)
    # in the environment, not in /tmp: a build stopped midway (the hub went down) leaves nothing
    # outside what is removed with it
    work = Path(tempfile.mkdtemp(prefix=".lakehub-cds-", dir=final.parent))
    os.chdir(work)  # whatever Spark writes beside it goes with it
    made = work / "made"
    made.mkdir()
    deadline = time.monotonic() + timeout
    jars = local_jars()

    def dump(role: str) -> str:
        return f"-XX:ArchiveClassesAtExit={made / f'{role}.jsa'} {QUIET}"

    java = shutil.which("java")
    jcmd = Path(os.path.realpath(java)).with_name("jcmd") if java else None
    if jcmd is None or not jcmd.is_file():
        jcmd = None  # a Java without its tools: the executor writes its archive at exit

    base = {
        **os.environ,
        "SPARK_HOME": str(home),
        "SPARK_NO_DAEMONIZE": "1",
        "SPARK_LOCAL_IP": "127.0.0.1",
        "SPARK_DAEMON_MEMORY": "512m",
        "PYSPARK_PYTHON": sys.executable,
    }
    master_port, ui_port = _port(), _port()
    spark_class = str(home / "bin" / "spark-class")
    procs: list[subprocess.Popen[bytes]] = []
    log = open(work / "daemons.log", "ab")  # noqa: SIM115 (closed below)
    try:
        procs.append(
            subprocess.Popen(  # noqa: S603 (the environment's own Spark)
                [
                    spark_class,
                    "org.apache.spark.deploy.master.Master",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(master_port),
                    "--webui-port",
                    str(ui_port),
                ],
                env={**base, "SPARK_DAEMON_JAVA_OPTS": dump("master")},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
        _wait(lambda: _listens(master_port), "master", deadline)
        url = f"spark://127.0.0.1:{master_port}"
        procs.append(
            subprocess.Popen(  # noqa: S603
                [
                    spark_class,
                    "org.apache.spark.deploy.worker.Worker",
                    "--host",
                    "127.0.0.1",
                    "--webui-port",
                    "0",
                    "--cores",
                    "1",
                    "--memory",
                    "1g",
                    "--work-dir",
                    str(work / "worker"),
                    url,
                ],
                env={**base, "SPARK_DAEMON_JAVA_OPTS": dump("worker")},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
        start_jvm(jars, {"spark.driver.extraJavaOptions": dump("driver")})
        builder = SparkSession.builder.master(url).appName("lakehub-cds")
        settings = {
            "spark.executor.memory": "512m",
            "spark.executor.extraJavaOptions": (
                f"-XX:+RecordDynamicDumpInfo {QUIET}" if jcmd else dump("executor")
            ),
            **({"spark.executor.extraClassPath": ":".join(jars)} if jars else {}),
        }
        for key, value in settings.items():
            builder = builder.config(key, value)
        spark = builder.getOrCreate()
        table = work / "table"
        frame = spark.range(10_000).selectExpr("id % 7 AS k", "rand() AS v")
        frame.groupBy("k").sum("v").write.parquet(str(table))
        counted = spark.read.parquet(str(table)).count()
        summed = spark.sparkContext.parallelize(range(100), 2).map(lambda x: x * 2).sum()
        if (counted, summed) != (7, 9900):
            raise RuntimeError(f"the application computed {counted}, {summed}: not 7, 9900")
        for pid in _executors(procs[1].pid) if jcmd else []:
            subprocess.run(  # noqa: S603 (this Java's own tool)
                [str(jcmd), str(pid), "VM.cds", "dynamic_dump", str(made / "executor.jsa")],
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=max(5.0, deadline - time.monotonic()),
                check=True,
            )
        spark.stop()
        # the driver's JVM exits (writing its archive) once its standard input closes
        from pyspark import SparkContext

        gateway = SparkContext._gateway.proc  # type: ignore[union-attr]
        gateway.stdin.close()
        gateway.wait(timeout=max(5.0, deadline - time.monotonic()))
    finally:
        for proc in reversed(procs):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        # each group (a worker's executors are in the worker's) gone: every archive written
        for proc in procs:
            _wait(partial(_gone, proc), "exit", deadline + 30)
        log.close()
    try:  # the others' archives stand without this one
        _connect(home, jars, work, base, dump("connect"), deadline)
    except (OSError, RuntimeError, subprocess.SubprocessError) as err:
        log_path = work / "connect.log"
        said = log_path.read_text(errors="replace").splitlines() if log_path.exists() else []
        tail = "\n".join([line for line in said if "[cds]" not in line][-30:])
        print(f"no class-data archive for Spark Connect's server: {err}\n{tail}", file=sys.stderr)
    final.mkdir(parents=True, exist_ok=True, mode=0o755)
    roles = []
    for role in ROLES:
        if (made / f"{role}.jsa").is_file():
            os.chmod(made / f"{role}.jsa", 0o444)
            os.replace(made / f"{role}.jsa", archive(env, role))
            roles.append(role)
    shutil.rmtree(work, ignore_errors=True)
    return roles


CLIENT = """
import os, sys
from pyspark.sql.connect.client import DefaultChannelBuilder
from pyspark.sql.connect.session import SparkSession
channel = DefaultChannelBuilder(sys.argv[1])
channel.set("token", os.environ.pop("LAKEHUB_CDS_TOKEN"))
spark = SparkSession.builder.channelBuilder(channel).getOrCreate()
frame = spark.range(10_000).selectExpr("id % 7 AS k", "rand() AS v")
frame.groupBy("k").sum("v").write.parquet(sys.argv[2])
counted = spark.read.parquet(sys.argv[2]).count()
if counted != 7:
    raise SystemExit(f"the query counted {counted}, not 7")
spark.stop()
"""


def _connect(
    home: Path, jars: list[str], work: Path, base: dict[str, str], dump: str, deadline: float
) -> None:
    """A Spark Connect server started as a user's Connect cluster is (its settings in a file,
    ``spark-submit``, the same class path), one query from the Connect client, then stopped:
    the JVM writes its archive as it exits."""
    from lakehub.compute.spark_session import connect_argv, connect_server_conf

    port, ui_port, token = _port(), _port(), secrets.token_urlsafe(24)
    props = {
        "spark.master": "local[1]",
        **connect_server_conf(
            "127.0.0.1", port, ui_port, token, secrets.token_hex(16), sys.executable, work
        ),
        "spark.driver.extraJavaOptions": f"-Djava.io.tmpdir={work} {dump}",
        **({"spark.driver.extraClassPath": ":".join(jars)} if jars else {}),
    }
    conf = work / "connect.conf"
    fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.writelines(f"{k} {v}\n" for k, v in props.items())
    log = open(work / "connect.log", "ab")  # noqa: SIM115 (closed below)
    server = subprocess.Popen(  # noqa: S603 (the environment's own Spark)
        connect_argv(home, conf),
        env={**base, "SPARK_DAEMON_MEMORY": "1g"},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        _wait(lambda: _listens(port), "Spark Connect server", deadline)
        subprocess.run(  # noqa: S603 (this interpreter)
            [sys.executable, "-c", CLIENT, f"sc://localhost:{port}", str(work / "connected")],
            env={**base, "LAKEHUB_CDS_TOKEN": token, "PYTHONWARNINGS": "ignore"},
            stdout=log,
            stderr=subprocess.STDOUT,
            timeout=max(5.0, deadline - time.monotonic()),
            check=True,
        )
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGTERM)
        _wait(partial(_gone, server), "exit", deadline + 30)
        log.close()


if __name__ == "__main__":
    took = time.monotonic()
    done = make(Path(sys.prefix))
    print(f"class-data archives of {', '.join(done)} in {time.monotonic() - took:.0f} s")
