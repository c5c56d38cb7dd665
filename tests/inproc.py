"""The in-process test layer: the control plane's app over a real platform, without a hub.

One per test session (fixture ``inproc``): a temporary data directory, its metadata migrated and
its first administrator made as ``lakehub up`` does (``upgrade``, ``Directory.create``), a REAL
lake (one ``weed`` process, started with the lake's own command and identity file), the
platform built over them (``Platform.build``) and ``create_app(platform)`` served by uvicorn in a
thread of this process, on 127.0.0.1. JupyterHub is the one part replaced: by its stand-in
(``standins/jupyterhub.py``), which hands out the user tokens the app checks. The app's lifespan
is off (it would build notebook environments): the quota loop is started by the fixture.

Tests use ``InProc.http(name)`` (a user's client, a token from the stand-in),
``InProc.admin_http()`` (the local administrator: the service token, as the CLI),
``InProc.browser_login(name)`` (a portal session: the cookie the portal's OAuth callback sets),
``InProc.cli(...)`` (an administrator's command, ``--data-dir`` pointing at the platform: the
app listens on the runtime's API port and the runtime file says it is ready),
``InProc.quick_user(name)`` and the ``new_user`` factory ``inproc_user``. Clients are plain
``httpx.Client``s against the in-process server, so the same request goes through the same
routing, validation and error handlers as on a hub. ``InProc`` answers the ``Hub`` calls these
tests make (``url``, ``api``, ``token``, ``http``, ``cli``, ``wait``, ``runtime``,
``data_dir``), so a test moves by changing its fixture.

What stays on real hubs: JupyterHub's own login page and REST API, servers and kernels, the
portal's OAuth exchange itself, the ingest receivers, process kills.

Monitoring: ``metrics_store`` runs the REAL time-series store for a module (VictoriaMetrics, with
the store's own command: it scrapes the in-process API every second) and the alert rules' loop;
every alert notice goes to ``InProc.webhooks`` (a receiver on 127.0.0.1 the settings name).

Faults: ``lake_down`` stops the lake for one test and starts it again after; ``full_quota`` is
a space whose quota is reached (the lake refuses writes to it); ``slow_spawner`` makes the
stand-in take a second to start a server.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from hubs import ApiUser, answers
from lakehub.client import tls_context
from standins.jupyterhub import JupyterHubStandIn

API_PREFIX = "/services/lakehub/api"
READY_TIMEOUT = 60.0
LAKEHUB = [sys.executable, "-m", "lakehub.cli"]


def _wait(predicate: Any, what: str, timeout: float = READY_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _ephemeral_ports(count: int) -> list[int]:
    """``count`` distinct ports of the kernel's choosing (all held until all are chosen)."""
    held = [socket.socket() for _ in range(count)]
    try:
        for s in held:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in held]
    finally:
        for s in held:
            s.close()


@dataclass
class InProc(ApiUser):
    """The running in-process control plane; ``url`` is its front, like a hub's."""

    platform: Any
    hub_standin: JupyterHubStandIn
    url: str
    lake_proc: subprocess.Popen[bytes] | None = None
    webhooks: WebhookSink | None = None
    tokens: dict[str, str] = field(default_factory=dict)
    passwords: dict[str, str] = field(default_factory=dict)
    clients: list[httpx.Client] = field(default_factory=list)  # closed when the layer stops

    @property
    def api(self) -> str:
        return f"{self.url}{API_PREFIX}"

    @property
    def data_dir(self) -> Path:
        return Path(self.platform.settings.data_dir)

    def runtime(self) -> dict[str, Any]:
        """The runtime file, as ``Hub.runtime``: the ports the lake and the API listen on."""
        data: dict[str, Any] = json.loads((self.data_dir / "run" / "runtime.json").read_text())
        return data

    def admin_http(self) -> httpx.Client:
        """The local administrator (the service token), with the API as base URL."""
        token = self.platform.tokens.service
        return self._keep(
            httpx.Client(
                base_url=self.api,
                headers={"Authorization": f"token {token}"},
                timeout=60,
                verify=tls_context(),
            )
        )

    def token(self, name: str) -> str:
        if name not in self.tokens:  # the first admin, made before the app served
            with self.admin_http() as c:
                r = c.post(f"/users/{name}/tokens", json={"note": "tests"})
                assert r.status_code == 201, r.text
                self.tokens[name] = r.json()["token"]
        return self.tokens[name]

    def browser_login(self, name: str) -> httpx.Client:
        """A browser's portal session for ``name``: the encrypted token cookie the portal's
        OAuth callback sets (the exchange itself needs JupyterHub: real hubs test it)."""
        from lakehub.server.web.auth import TOKEN_COOKIE

        c = self._keep(
            httpx.Client(base_url=self.url, follow_redirects=True, timeout=60, verify=tls_context())
        )
        cookie = self.platform.vault.encrypt(self.token(name))
        c.cookies.set(TOKEN_COOKIE, cookie, domain="127.0.0.1", path=self.platform.prefix)
        return c

    def cli(
        self, *args: str, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """``lakehub ARGS --data-dir DATA_DIR``: an administrator's command, in a process."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "LAKEHUB_"))}
        argv = [*LAKEHUB, *args, "--data-dir", str(self.data_dir)]
        proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"lakehub {' '.join(args)} failed: {proc.stderr}")
        return proc

    # the lake, for the fault fixtures ---------------------------------------------------------
    def start_lake(self) -> None:
        lake = self.platform.directory.lake
        self.platform.directory.prepare_lake()
        proc = lake.process()
        if proc is None:  # a lake run elsewhere
            return
        assert proc.pid_file is not None, "an embedded lake says where its pid goes"
        log = open(self.data_dir / "lake.log", "ab")  # noqa: SIM115 - the child keeps it
        self.lake_proc = subprocess.Popen(
            proc.argv, env={**os.environ, **proc.env}, cwd=proc.cwd, stdout=log, stderr=log
        )
        log.close()
        proc.pid_file.write_text(str(self.lake_proc.pid))  # it reloads identities on SIGHUP
        _wait(lambda: answers(lake.endpoint_url + "/"), "the lake")

    def stop_lake(self) -> None:
        proc, self.lake_proc = self.lake_proc, None
        if proc is None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


class WebhookSink:
    """Keeps the JSON bodies POSTed to it (alert notices), in arrival order."""

    def __init__(self) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        got = self.got = []  # type: list[dict[str, Any]]

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                got.append(json.loads(body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _serve(app: Any, port: int) -> tuple[uvicorn.Server, threading.Thread, str]:
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, lifespan="off", access_log=False, log_level="warning"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="inproc-api", daemon=True)
    thread.start()
    _wait(lambda: server.started, "the in-process API")
    port = server.servers[0].sockets[0].getsockname()[1]
    return server, thread, f"http://127.0.0.1:{port}"


@pytest.fixture(scope="session")
def inproc() -> Iterator[InProc]:
    with serve_platform() as ip:
        yield ip


@contextmanager
def serve_platform(**overrides: Any) -> Iterator[InProc]:
    """An in-process control plane over its own data directory; ``overrides``: settings (a
    lake run elsewhere, ``lake_backend``, is not started: only given its identities)."""
    from lakehub.server.config import load_settings
    from lakehub.server.db import Database, upgrade
    from lakehub.server.identity.users import Directory, home_bucket
    from lakehub.server.notebooks.limits import remove_hub_groups
    from lakehub.server.platform import Platform
    from lakehub.server.runtime import allocate, tokens
    from lakehub.server.up import _dirs
    from lakehub.server.vault import Vault
    from lakehub.server.web.app import create_app

    root = Path(tempfile.mkdtemp(prefix="lakehub-inproc-", dir="/tmp"))
    root.chmod(0o711)
    webhooks = WebhookSink()
    settings = load_settings(  # every port picked freely: test workers run one each at once
        data_dir=root / "data",
        environments_dir=Path(os.environ.get("LAKEHUB_TEST_ENVIRONMENTS") or root / "envs"),
        lake_port=0,
        forward_port=0,
        ingest_http_port=0,
        models_delete_grace=6,  # deleted runs' files leave the lake within a test's time
        serving_sample_rate=1.0,  # every request an endpoint answers lands in its dataset
        jobs_webhook_hosts=["127.0.0.1"],  # the tests' webhook receivers
        metrics_interval=1,  # what the store scrapes is there within a test's second
        alert_interval=1,
        alert_webhooks=[webhooks.url],
        **{"compute_pool_spark": 0, **overrides},
    )
    _dirs(settings)  # as 'lakehub up' makes them: users' accounts reach their homes
    tok = tokens(settings)
    standin = JupyterHubStandIn(tok.service).start()
    runtime = allocate(settings)
    # the kernel's own ports, outside the range hubs allocate from: a hub started by another
    # worker holds its ports free until its components bind them, seconds later
    runtime.ports = dict(zip(runtime.ports, _ephemeral_ports(len(runtime.ports)), strict=True))
    runtime.ports["hub"] = standin.port
    runtime.state = "ready"
    upgrade(settings.database_url)
    db = Database(settings.database_url)
    directory = Directory(db, Vault(settings.state_dir), lake=None)  # type: ignore[arg-type]
    directory.create(settings.admin_user, actor="tests", admin=True, provision=False)
    db.engine.dispose()
    platform = Platform.build(settings, runtime)
    server = thread = None
    ip = InProc(platform, standin, "", webhooks=webhooks)
    try:
        ip.start_lake()
        for ident in platform.directory.identities():
            platform.directory.lake.ensure_bucket(home_bucket(ident.name))
        standin.users[settings.admin_user] = {"groups": ["lakehub-admins"], "servers": {}}
        platform.quotas.start()
        platform.purge.start()
        server, thread, ip.url = _serve(create_app(platform), runtime.ports["api"])
        runtime.settled = True  # no supervisor starting things: background work may begin
        runtime.save(settings)  # what the administrator's commands read to find the API
        yield ip
    finally:
        ip.close_clients()
        if server is not None and thread is not None:
            if server.started:  # the endpoints' replicas stop with the app, as at a hub's stop
                loop = server.servers[0].get_loop()
                done = asyncio.run_coroutine_threadsafe(platform.serving.close(), loop)
                try:
                    done.result(60)
                except Exception as err:  # noqa: BLE001 (the rest of the teardown still runs)
                    print(f"the endpoints' replicas did not stop: {err!r}", file=sys.stderr)
            server.should_exit = True
            thread.join(30)
        platform.quotas.stop()
        platform.purge.stop()
        platform.monitoring.close()  # its kept-alive connections to the store
        platform.db.engine.dispose()
        ip.stop_lake()
        standin.stop()
        webhooks.stop()
        remove_hub_groups(str(settings.data_dir))
        shutil.rmtree(root, ignore_errors=True)


_counter = iter(range(1, 10_000))


@pytest.fixture
def inproc_user(inproc: InProc) -> Any:
    """Make a fresh active user in the in-process platform; returns its name."""

    def make(prefix: str = "u", admin: bool = False) -> str:
        name = f"{prefix}{next(_counter)}{secrets.token_hex(2)}"
        inproc.quick_user(name, admin=admin)
        return name

    return make


@pytest.fixture
def lake_down(inproc: InProc) -> Iterator[InProc]:
    """The lake stopped for this test; started again (same data, same keys) after it."""
    inproc.stop_lake()
    _wait(lambda: not answers(inproc.platform.directory.lake.endpoint_url + "/"), "lake down")
    try:
        yield inproc
    finally:
        inproc.start_lake()


@pytest.fixture
def full_quota(inproc: InProc, inproc_user: Any) -> Iterator[dict[str, str]]:
    """A space at its quota of one object: its owner wrote that object and the lake now refuses
    writes to its bucket. Returns the space, its bucket and its owner."""
    owner = inproc_user("full")
    space = f"full{secrets.token_hex(3)}"
    with inproc.http(owner) as c:
        assert c.post(f"{API_PREFIX}/spaces", json={"name": space}).status_code == 201
    with inproc.admin_http() as c:
        r = c.put(f"/quotas/space/{space}", json={"max_objects": 1})
        assert r.status_code == 200, r.text
    creds = inproc.platform.directory.credentials(owner)
    from conftest import s3_for

    s3 = s3_for(
        {
            "endpoint_url": creds.endpoint_url,
            "access_key_id": creds.access_key_id,
            "secret_access_key": creds.secret_access_key,
        }
    )
    s3.put_object(Bucket=f"space-{space}", Key="one", Body=b"1")
    inproc.platform.quotas.enforce()
    yield {"space": space, "bucket": f"space-{space}", "owner": owner}
    with inproc.admin_http() as c:
        c.delete(f"/quotas/space/{space}")


@pytest.fixture
def slow_spawner(inproc: InProc) -> Iterator[JupyterHubStandIn]:
    """The stand-in takes a second to answer a server start."""
    inproc.hub_standin.spawn_delay = 1.0
    try:
        yield inproc.hub_standin
    finally:
        inproc.hub_standin.spawn_delay = 0.0


@pytest.fixture(scope="module")
def metrics_store(inproc: InProc) -> Iterator[InProc]:
    """The real store, started with its own command (it scrapes the in-process API, the lake and
    itself every second), and the alert rules' loop, for one module."""
    mon = inproc.platform.monitoring
    if not mon.running:
        pytest.skip(f"no metrics store here: {mon.store.reason}")
    procs = []
    try:
        for name, proc in mon.store.process():
            log = open(inproc.data_dir / f"{name}.log", "ab")  # noqa: SIM115 - the child keeps it
            procs.append(
                subprocess.Popen(
                    proc.argv, env={**os.environ, **proc.env}, cwd=proc.cwd, stdout=log, stderr=log
                )
            )
            log.close()
            _wait(lambda url=proc.health_url: answers(url), f"the store's {name}")
        mon.start()
        yield inproc
    finally:
        mon.close()  # the rules' loop, and the connections to the store
        for p in procs:
            p.terminate()
            p.wait(20)
