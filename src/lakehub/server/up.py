"""``lakehub up`` and ``down``: prepare the data directory, run every component, stop them all.

Order of a start: take the data directory's lock, check ports and binaries (preflight); start
JupyterHub, the proxy and the control plane; meanwhile migrate the metadata, create the first
admin and build the default notebook environment (first start only) (prepare); write the lake's
identities and start the lake and the warm starter; wait until all answer; give every user
their bucket; then watch.
"""

from __future__ import annotations

import fcntl
import http.client
import logging
import os
import select
import signal
import sys
import time
import traceback
import urllib.parse
from pathlib import Path
from typing import IO, Protocol

from lakehub.server import front_door, leftovers
from lakehub.server.compute.dask_gateway import gateway_url
from lakehub.server.config import Settings, SettingsError
from lakehub.server.lake import lake_class, open_lake
from lakehub.server.lake.base import Lake, LakeUnavailable
from lakehub.server.notebooks.environments import ensure_environment
from lakehub.server.ops.base import NoStore
from lakehub.server.ops.victoria import open_store
from lakehub.server.runtime import (
    Runtime,
    allocate,
    find_binary,
    load_runtime,
    port_in_use,
    runtime_file,
    tokens,
)
from lakehub.server.supervisor import Component, Supervisor
from lakehub.server.vault import Vault

log = logging.getLogger("lakehub.server.up")
READY_TIMEOUT = 90.0
# "ready": the front door, a login, the portal and the API. They start first with the gateway
# (JupyterHub waits for its services to answer before it adds their routes), then the lake (once
# its identities are written); the others once the hub is ready, each at its nice
READY_WITH = ("proxy", "hub", "api")
FIRST = (*READY_WITH, "gateway")


class Say(Protocol):
    def __call__(self, message: str, secret: bool = False) -> None: ...


class UpError(RuntimeError):
    """A start that cannot proceed; the message is one line for a person."""


def _bin(name: str) -> str:
    found = find_binary(name)
    if not found:
        raise UpError(f"'{name}' is missing: install LakeHub with its 'hub' extra")
    return found


def take_lock(settings: Settings) -> IO[str]:
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    fh = open(settings.run_dir / "lock", "a+")  # noqa: SIM115 (held for the hub's lifetime)
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.close()
        rt = load_runtime(settings)
        pid = f" (pid {rt.supervisor_pid})" if rt else ""
        raise UpError(f"a hub is already running on {settings.data_dir}{pid}") from None
    return fh


def lock_is_free(settings: Settings) -> bool:
    try:
        take_lock(settings).close()
    except UpError:
        return False
    return True


def _dirs(settings: Settings) -> None:
    for path, mode in (
        (settings.data_dir, 0o711),
        (settings.state_dir, 0o700),
        (settings.run_dir, 0o700),
        (settings.log_dir, 0o700),
        (settings.homes_dir, 0o711),
    ):
        path.mkdir(parents=True, exist_ok=True)
        os.chmod(path, mode)


def _check_traversable(path: Path) -> None:
    """Per-user accounts must be able to walk down to their homes and the environments."""
    for parent in path.resolve().parents:
        if parent.exists() and not parent.stat().st_mode & 0o001:
            raise UpError(
                f"user accounts cannot reach {path}: {parent} is not traversable by others "
                f"(mode {parent.stat().st_mode & 0o777:o}); choose another --data-dir"
            )


def preflight(settings: Settings) -> None:
    """The cheap checks and the data directory's layout: fail fast, in one line.

    Called with the data directory's lock held: whatever still runs for it was left by a hub
    that died, and goes first; it might hold the ports, so this waits until it is gone.
    """
    os.umask(0o077)  # everything the hub writes is private unless made otherwise
    swept = sweep_orphans(settings)
    try:
        lake = lake_class(settings)
        lake.check(settings)
    except (FileNotFoundError, SettingsError) as err:
        raise UpError(str(err)) from None
    checks = [(settings.port, "front door", settings.host)]
    if lake.local:  # a lake run elsewhere may well hold that port on this machine
        checks.append((settings.lake_port, "lake", "127.0.0.1"))
    if settings.ingest:
        checks += [
            (settings.forward_port, "Forward receiver", settings.ingest_host),
            (settings.ingest_http_port, "HTTP receiver", settings.ingest_host),
        ]
    for port, what, host in checks:
        if port and not _wait_free(host, port, 5.0 if swept else 0.0):
            raise UpError(f"port {port} for the {what} is already in use")
    for name in ("jupyterhub", "traefik"):
        _bin(name)
    if settings.isolated:
        _check_traversable(settings.data_dir)
    _dirs(settings)


def prepare(settings: Settings, say: Say) -> None:
    """Migrate metadata, create the first admin, build the notebook environment (idempotent).

    The first admin's password goes to ``say(..., secret=True)``: shown once, never logged.
    """
    from lakehub.server.db import Database, upgrade
    from lakehub.server.identity.users import Directory, UserError

    logging.getLogger("alembic").setLevel(logging.WARNING)
    upgrade(settings.database_url)
    if settings.auth == "local":
        db = Database(settings.database_url)
        directory = Directory(db, Vault(settings.state_dir), lake=None)  # type: ignore[arg-type]
        try:
            given = settings.admin_password.get_secret_value() if settings.admin_password else None
            _, password = directory.create(
                settings.admin_user,
                actor="lakehub up",
                admin=True,
                password=given,
                provision=False,
            )
            if password:
                say(
                    f"first administrator: {settings.admin_user}  password: {password}"
                    "  (shown once; change it in the portal)",
                    secret=True,
                )
        except UserError as err:
            if err.status != 409:
                raise UpError(str(err)) from None
        finally:
            db.engine.dispose()
    try:
        ensure_environment(settings.envs_dir, "default", settings.notebook_python, say=say)
    except RuntimeError as err:
        raise UpError(f"cannot build the notebook environment: {err}") from None
    if not settings.isolated:
        say(
            "warning: not running as root, so every notebook server runs under this account: "
            "users are NOT isolated from each other"
        )


def components(settings: Settings, rt: Runtime, lake: Lake) -> list[Component]:
    p = rt.ports
    logs = settings.log_dir
    base_env = {
        "LAKEHUB_DATA_DIR": str(settings.data_dir),
        "LAKEHUB_HOST": settings.host,
        "LAKEHUB_PORT": str(settings.port),
        "LAKEHUB_LAKE_PORT": str(p["s3"]),
    }
    hub_config = Path(__file__).parent / "notebooks" / "jupyterhub_config.py"
    lake_proc = lake.process()
    comps = []
    if lake_proc is not None:
        comps.append(
            Component(
                "lake",
                lake_proc.argv,
                logs / "lake.log",
                rt.s3_url,
                rt.s3_url + "/",
                env=lake_proc.env,
                cwd=lake_proc.cwd,
                pid_file=lake_proc.pid_file,
            )
        )
    comps += [
        Component(
            "proxy",
            [
                _bin("traefik"),
                f"--configfile={front_door.static_config(settings, p['proxy_api'], p['hub'])}",
            ],
            logs / "proxy.log",
            rt.front_url,
            front_door.health_url(p["proxy_api"]),
        ),
        Component(
            "hub",
            [_bin("jupyterhub"), "-f", str(hub_config)],
            logs / "hub.log",
            rt.front_url + "/hub/",
            f"http://127.0.0.1:{p['hub']}/hub/health",
            env=base_env,
            cwd=settings.state_dir,
        ),
        Component(
            "api",
            [
                sys.executable,
                "-m",
                "uvicorn",
                "--factory",
                "lakehub.server.web.app:create_app",
                "--host",
                "127.0.0.1",
                "--port",
                str(p["api"]),
                "--no-access-log",
            ],
            logs / "api.log",
            rt.front_url + "/services/lakehub/",
            rt.api_url + "/api/health",
            env=base_env,
            nice=5,  # JupyterHub's start comes first; then users' requests come before
            settled_nice=0,  # what runs in the background (pool fills, builds, the store)
        ),
    ]
    comps.append(
        Component(
            "gateway",
            [
                _bin("dask-gateway-server"),
                "-f",
                str(Path(__file__).parent / "compute" / "gateway_config.py"),
            ],
            logs / "gateway.log",
            f"{rt.front_url}/services/dask-gateway/",
            f"{gateway_url(rt)}/api/health",
            env=base_env,
            cwd=settings.state_dir,
            nice=5,
        )
    )
    if settings.ingest:
        comps.append(
            Component(
                "ingest",
                [sys.executable, "-m", "lakehub.server.ingest"],
                logs / "ingest.log",
                f"http://{settings.ingest_host}:{p['ingest_http']}",
                f"http://{_probe_host(settings.ingest_host)}:{p['ingest_http']}/health",
                env=base_env,
            )
        )
    for name, proc in open_store(settings, rt, lake_metrics=lake_proc is not None).process():
        comps.append(
            Component(
                name,
                proc.argv,
                logs / f"{name}.log",
                proc.health_url.rpartition("/")[0],
                proc.health_url,
                env=proc.env,
                cwd=proc.cwd,
                nice=10,  # watching the hub must not slow it
            )
        )
    if settings.warm_start:
        env_python = settings.envs_dir / "default" / "bin" / "python"
        sock = settings.run_dir / "warm.sock"
        comps.append(
            Component(
                "warm",
                [str(env_python), "-m", "lakehub.server.notebooks.warm", str(sock)],
                logs / "notebooks.log",
                f"unix:{sock}",
                f"unix:{sock}",
                inherit_env=False,
                nice=10,  # its imports must not slow the hub's start on a small machine
                # nothing of the hub's environment may reach a user's process
                env={
                    "PATH": f"{env_python.parent}:/usr/local/bin:/usr/bin:/bin",
                    "LANG": os.environ.get("LANG", "C.UTF-8"),
                },
            )
        )
    return comps


def _front_door_routes(settings: Settings) -> tuple[str, str]:
    """The control plane's and the gateway's health through the front door: the first must
    answer before the hub says it is ready, the second before it is settled. JupyterHub answers
    its health check before it has added its services' routes to the proxy; until then a
    request for a service reaches the hub itself and is redirected."""
    host = _probe_host(settings.host)
    front = f"http://[{host}]:{settings.port}" if ":" in host else f"http://{host}:{settings.port}"
    return front + "/services/lakehub/api/health", front + "/services/dask-gateway/api/health"


def routed(url: str, timeout: float = 1.0) -> bool:
    """The URL answers 200 itself: no redirect followed, no error page."""
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=timeout)
    try:
        conn.request("GET", parts.path)
        return conn.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def _probe_host(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host


def sweep_orphans(settings: Settings) -> int:
    """Stop what a hub that died left on this data directory (the caller holds its lock); returns
    how many went, once they are all gone. Fails if some would not stop."""
    count, stuck = leftovers.stop(settings.data_dir)
    if count:
        log.warning("stopped %d processes left by a previous hub", count)
    if stuck:
        raise UpError(
            f"processes left by a previous hub on {settings.data_dir} would not stop "
            f"(pids {' '.join(map(str, stuck))}); stop them and try again"
        )
    return count


def _wait_free(host: str, port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while port_in_use(host, port):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
    return True


def serve(settings: Settings, say: Say, lock: IO[str] | None = None) -> int:
    """Run the hub in this process until SIGTERM/SIGINT. Returns the exit code.

    JupyterHub, the slowest to start, goes first; the rest of the preparation runs meanwhile.
    """
    if lock is None:
        lock = take_lock(settings)
        preflight(settings)
    rt = allocate(settings)
    rt.supervisor_pid = os.getpid()
    rt.save(settings)
    # kept open until this process ends, however it ends: then the reaper stops what is left
    _reaper_pipe = leftovers.start_reaper(settings.data_dir, settings.log_dir / "supervisor.log")
    tok = tokens(settings)
    vault = Vault(settings.state_dir)  # every key exists before any component reads it
    lake = open_lake(settings, rt, tok)
    comps = components(settings, rt, lake)

    def publish() -> None:
        rt.components = {
            c.name: {
                "pid": c.proc.pid if c.proc else None,
                "url": c.url,
                "log": str(c.log_file),
                "health_url": c.health_url,
                "restarts": c.restarts,
            }
            for c in comps
        }
        rt.save(settings)

    sup = Supervisor(comps, publish, marker=leftovers.marker(settings.data_dir))
    stop = lambda *_: sup.request_stop()  # noqa: E731
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    db = None
    try:
        # JupyterHub is the slowest to start and waits for its services: they all go first
        sup.start_all(FIRST)
        prepare(settings, say)
        from lakehub.server.db import Database
        from lakehub.server.identity.users import Directory, home_bucket

        db = Database(settings.database_url)
        directory = Directory(db, vault, lake)
        directory.prepare_lake()
        sup.start_all(("lake",))
        deadline = time.monotonic() + READY_TIMEOUT
        first = [c for c in comps if c.name in READY_WITH]
        lakehub, gateway = _front_door_routes(settings)
        sup.watch(  # ready: a user can log in, and the portal and the API answer
            until=lambda: (
                (all(c.healthy(0.5) for c in first) and routed(lakehub, 0.5))
                or time.monotonic() > deadline
            ),
            interval=0.05,
        )
        if sup.stopping:
            return 0
        sick = [c.name for c in first if not c.healthy()]
        if not routed(lakehub):
            sick.append(f"the front door's route to {lakehub}")
        if sick:
            rt.state, rt.reason = "failed", f"not healthy in time: {', '.join(sick)} (see logs)"
            rt.save(settings)
            say(f"error: {rt.reason}")
            return 1
        rt.state = "ready"
        rt.save(settings)
        # imported here, not before the components start (the metadata layer, half a second)
        from lakehub.server.ops.monitor import first_sample

        store = open_store(settings, rt)
        if isinstance(store, NoStore):
            say(f"note: no dashboards or alerts: {store.reason}")
        if not (settings.envs_dir / "datascience").exists():
            say(
                "notebook environments are being built in the background (a few minutes the "
                "first time): see 'lakehub environment ls'"
            )
        sup.start_all()  # what a login does not need: the CPU was the hub's until now
        coming = [c.name for c in comps if c not in first and not c.healthy(0.5)]
        say(
            f"LakeHub is up: {rt.front_url}  (data in {settings.data_dir})"
            + (f"; still starting: {', '.join(coming)} ('lakehub status')" if coming else "")
        )
        # the first sample as soon as the store answers, not once everything does
        sample = [c for c in comps if c.name == "metrics" and not isinstance(store, NoStore)]

        def settled() -> bool:
            if sample and sample[0].healthy(0.5):
                first_sample(store, settings, rt)
                sample.clear()
            return (
                all(c.healthy(0.5) for c in comps) and routed(gateway, 0.5)
            ) or time.monotonic() > deadline + READY_TIMEOUT

        sup.watch(until=settled, interval=0.1)
        if sup.stopping:
            return 0
        rt.settled = True
        rt.save(settings)
        sup.settle()
        sick = [c.name for c in comps if not c.healthy()]
        if sick:
            say(f"warning: not healthy in time: {', '.join(sick)} (see their logs)")
        if sample:  # the store never answered while the rest came up: once more now
            first_sample(store, settings, rt)
        store.close()
        try:  # users made while the lake was down (the first admin) get their bucket now
            for ident in directory.identities():
                lake.ensure_bucket(home_bucket(ident.name))
        except LakeUnavailable as err:
            say(f"warning: {err}")
        sup.watch()
    finally:
        rt.state = "stopping"
        rt.save(settings)
        sup.stop_all()
        leftovers.stop(settings.data_dir)  # notebook servers, clusters, builds; the reaper
        if db is not None:
            db.engine.dispose()
        runtime_file(settings).unlink(missing_ok=True)
        lock.close()
        say("LakeHub stopped")
    return 0


def detach(settings: Settings, say: Say, timeout: float = 300.0) -> int:
    """Start the hub in the background; return once it is ready, or fail with the reason.

    The hub is this process, forked after the preflight checks; until it is ready, what it says
    comes back through a pipe and is printed here (the first admin's password included, which
    never goes to a log: if this command is gone, it is kept in ``state/first-admin-password``).
    """
    lock = take_lock(settings)
    preflight(settings)
    log_file = settings.log_dir / "supervisor.log"
    sys.stdout.flush()
    sys.stderr.flush()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the hub: its own session, output to the supervisor log
        os.close(read_end)
        os.setsid()
        with open(os.devnull, "rb") as null, open(log_file, "ab") as out:
            os.dup2(null.fileno(), 0)
            os.dup2(out.fileno(), 1)
            os.dup2(out.fileno(), 2)
        code = 1
        try:
            code = serve(settings, _relay(write_end, settings), lock=lock)
        except UpError as err:  # the last line of the log, which the waiting command shows
            print(f"error: {err}", file=sys.stderr)
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    os.close(write_end)
    lock.close()  # the hub holds the lock now
    pending = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([read_end], [], [], 0.1)
            chunk = os.read(read_end, 4096) if ready else b""
            pending += chunk
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                say(line.decode(errors="replace"))
                if line.startswith(b"LakeHub is up"):
                    return 0
            if (ready and not chunk) or os.waitpid(pid, os.WNOHANG) != (0, 0):
                tail = log_file.read_text(errors="replace").strip().splitlines()[-1:]
                raise UpError(f"the hub did not start: {' '.join(tail) or 'see ' + str(log_file)}")
    finally:
        os.close(read_end)
    os.kill(pid, signal.SIGTERM)
    raise UpError(f"the hub was not ready after {timeout:.0f} s; see {settings.log_dir}")


def _relay(fd: int, settings: Settings) -> Say:
    """``say`` for a detached hub: to the waiting command while it listens, else to the log."""
    pipe: IO[str] | None = os.fdopen(fd, "w", buffering=1)

    def say(message: str, secret: bool = False) -> None:
        nonlocal pipe
        if pipe is not None:
            try:
                pipe.write(message + "\n")
                if message.startswith("LakeHub is up"):
                    pipe.close()
                    pipe = None
                return
            except OSError:
                pipe = None
        if secret:  # nobody is listening: keep it for the operator, out of the logs
            from lakehub.server.vault import write_private

            write_private(settings.state_dir / "first-admin-password", message.encode())
            message = f"first administrator's password saved in {settings.state_dir}"
        print(message, flush=True)

    return say


def down(settings: Settings, timeout: float = 60.0) -> str:
    """Stop the hub on this data directory; returns what happened, in one line.

    If its supervisor died, what it left behind is stopped all the same (under the lock, so no
    new hub starts meanwhile), and this returns once it is gone.
    """
    rt = load_runtime(settings)
    try:
        lock = take_lock(settings)
    except UpError:
        lock = None
    if lock is not None:
        try:
            count = sweep_orphans(settings)
            runtime_file(settings).unlink(missing_ok=True)
        finally:
            lock.close()
        if count:
            return f"stopped {count} processes left by a hub whose supervisor had died"
        return f"no hub is running on {settings.data_dir}"
    assert rt is not None
    os.kill(rt.supervisor_pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if lock_is_free(settings):
            return "LakeHub stopped"
        time.sleep(0.1)
    raise UpError(f"the hub (pid {rt.supervisor_pid}) did not stop in {timeout:.0f} s")
