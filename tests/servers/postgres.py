"""Start a real, throw-away PostgreSQL 15 server on loopback for tests.

Usage in a fixture::

    try:
        server = start_postgres(tmp_path)
    except RuntimeError as err:
        pytest.skip(str(err))
    yield server
    server.stop()

PostgreSQL refuses to run as root, so when we are root the cluster is owned by
and run as the ``postgres`` system user (created by the Debian package). Its
files live in a fresh directory under the system temp dir, not under
``tmp_dir``: pytest's tmp_path sits below a 0700 root-owned directory that the
postgres user cannot enter. ``tmp_dir`` only receives the server logs.

Needs the Debian package ``postgresql`` (see scripts/install-system-packages.sh test).
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg2

PG_BIN = Path("/usr/lib/postgresql/15/bin")
START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 10.0
SYSTEM_USER = "postgres"

DB_NAME = "lakehub"
DB_USER = "lakehub"
DB_PASSWORD = "lakehub-secret"


@dataclass
class PostgresServer:
    url: str
    port: int
    socket_dir: Path
    process: subprocess.Popen[bytes] = field(repr=False)
    root: Path = field(repr=False)

    def stop(self) -> None:
        """Shut the server down and remove the cluster files."""
        _shutdown(self.process)
        shutil.rmtree(self.root, ignore_errors=True)


def _shutdown(proc: subprocess.Popen[bytes]) -> None:
    """Fast shutdown (SIGINT), then SIGKILL if it hangs."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=STOP_TIMEOUT_S)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tail(path: Path, chars: int = 2000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:].strip()
    except OSError:
        return ""


def _run_as() -> dict[str, Any]:
    """Popen kwargs that drop root to the postgres system user (nothing if not root)."""
    if os.geteuid() != 0:
        return {}
    try:
        pw = pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        raise RuntimeError(
            f"running as root but there is no {SYSTEM_USER!r} system user "
            "(install the Debian package postgresql)"
        ) from None
    return {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_ALL"] = "C"
    return env


def _wait_ready(proc: subprocess.Popen[bytes], socket_dir: Path, port: int, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    last_error = "no attempt"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"postgres exited with code {proc.returncode} during startup: {_tail(log)}"
            )
        try:
            psycopg2.connect(
                host=str(socket_dir),
                port=port,
                user=SYSTEM_USER,
                dbname="postgres",
                connect_timeout=2,
            ).close()
            return
        except psycopg2.OperationalError as err:
            last_error = str(err).strip()
        time.sleep(0.05)
    raise RuntimeError(
        f"postgres did not accept connections within {START_TIMEOUT_S:.0f}s "
        f"(last error: {last_error}): {_tail(log)}"
    )


def _create_app_db(socket_dir: Path, port: int) -> None:
    try:
        conn = psycopg2.connect(
            host=str(socket_dir), port=port, user=SYSTEM_USER, dbname="postgres"
        )
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute(f"CREATE ROLE {DB_USER} LOGIN PASSWORD %s", (DB_PASSWORD,))
                cur.execute(f"CREATE DATABASE {DB_NAME} OWNER {DB_USER}")
        finally:
            conn.close()
    except psycopg2.Error as err:
        raise RuntimeError(f"could not create role/database: {err}") from err


def start_postgres(tmp_dir: Path) -> PostgresServer:
    """initdb a fresh cluster and start it on 127.0.0.1; raise RuntimeError if impossible."""
    for tool in ("initdb", "postgres"):
        if not (PG_BIN / tool).exists():
            raise RuntimeError(
                f"{PG_BIN / tool} not found: run scripts/install-system-packages.sh test "
                "(Debian package postgresql)"
            )
    as_user = _run_as()
    env = _clean_env()

    logs = Path(tmp_dir) / "postgres"
    logs.mkdir(parents=True, exist_ok=True)
    initdb_log, server_log = logs / "initdb.log", logs / "postgres.log"

    root = Path(tempfile.mkdtemp(prefix="lakehub-pg-"))
    try:
        if as_user:
            os.chown(root, as_user["user"], as_user["group"])
        data = root / "data"

        # Superuser "postgres" with trust over the unix socket (setup only);
        # TCP logins need a SCRAM password.
        with initdb_log.open("wb") as fh:
            try:
                done = subprocess.run(
                    [
                        str(PG_BIN / "initdb"),
                        "-D",
                        str(data),
                        "-U",
                        SYSTEM_USER,
                        "--auth-local=trust",
                        "--auth-host=scram-sha-256",
                        "--no-locale",
                        "--encoding=UTF8",
                        "--no-sync",
                    ],
                    stdin=subprocess.DEVNULL,
                    stdout=fh,
                    stderr=subprocess.STDOUT,
                    cwd=root,
                    env=env,
                    timeout=60,
                    **as_user,
                )
            except subprocess.TimeoutExpired:
                raise RuntimeError(f"initdb timed out: {_tail(initdb_log)}") from None
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed ({done.returncode}): {_tail(initdb_log)}")

        # A free port can be taken between probing and binding; retry a couple of times.
        for attempt in range(3):
            port = _free_port()
            with server_log.open("wb") as fh:
                proc = subprocess.Popen(
                    [
                        str(PG_BIN / "postgres"),
                        "-D",
                        str(data),
                        "-p",
                        str(port),
                        "-c",
                        "listen_addresses=127.0.0.1",
                        "-c",
                        f"unix_socket_directories={root}",
                        "-c",
                        "fsync=off",
                        "-c",
                        "synchronous_commit=off",
                        "-c",
                        "full_page_writes=off",
                    ],
                    stdin=subprocess.DEVNULL,
                    stdout=fh,
                    stderr=subprocess.STDOUT,
                    cwd=root,
                    env=env,
                    **as_user,
                )
            server = PostgresServer(
                url=f"postgresql+psycopg2://{DB_USER}:{DB_PASSWORD}@127.0.0.1:{port}/{DB_NAME}",
                port=port,
                socket_dir=root,
                process=proc,
                root=root,
            )
            try:
                _wait_ready(proc, root, port, server_log)
                _create_app_db(root, port)
                return server
            except BaseException as err:
                _shutdown(proc)
                if "Address already in use" in str(err) and attempt < 2:
                    continue
                raise
        raise AssertionError("unreachable")
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
