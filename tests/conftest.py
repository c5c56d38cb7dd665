"""A real hub on loopback for the whole session, driven through the CLI, HTTP, the SDK and boto3."""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from botocore.config import Config

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"  # Debian's (no Playwright download)
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PAGE_TIMEOUT_MS = 30_000  # any single page load, click or expectation
LAKEHUB = [sys.executable, "-m", "lakehub.cli"]


def free_port() -> int:
    """A free port below the ephemeral range, like the hub's own (see lakehub.server.runtime)."""
    import random
    import socket

    from lakehub.server.runtime import PORT_RANGE

    for _ in range(1000):
        port = random.randrange(*PORT_RANGE)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError("no free port")


@dataclass
class Hub:
    data_dir: Path
    port: int
    admin_password: str
    env: dict[str, str]
    passwords: dict[str, str] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api(self) -> str:
        return f"{self.url}/services/lakehub/api"

    def cli(
        self, *args: str, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        argv = [*LAKEHUB, *args]
        if args and args[0] not in ("up",) and "--data-dir" not in args:
            argv += ["--data-dir", str(self.data_dir)]
        proc = subprocess.run(argv, capture_output=True, text=True, env=self.env, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"lakehub {' '.join(args)} failed: {proc.stderr}")
        return proc

    def status(self) -> dict[str, Any]:
        proc = self.cli("status", "--json", check=False)
        assert proc.stdout, f"lakehub status printed nothing: {proc.stderr}"
        data: dict[str, Any] = json.loads(proc.stdout)
        return data

    def runtime(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.data_dir / "run" / "runtime.json").read_text())
        return data

    def add_user(self, name: str, admin: bool = False) -> str:
        """Create a user through the CLI; returns the password it printed."""
        args = ["user", "add", name] + (["--admin"] if admin else [])
        out = self.cli(*args).stdout
        password = re.search(r"password: (\S+)", out)
        assert password, out
        self.passwords[name] = password.group(1)
        return password.group(1)

    def admin_http(self) -> httpx.Client:
        """The local administrator over HTTP: what the CLI does, without a process per call."""
        token = (self.data_dir / "state" / "service.token").read_text().strip()
        return httpx.Client(
            base_url=self.api, headers={"Authorization": f"token {token}"}, timeout=60
        )

    def quick_user(self, name: str, admin: bool = False) -> None:
        """Create an active user through the API (``add_user`` goes through the CLI)."""
        with self.admin_http() as c:
            r = c.post("/users", json={"name": name, "admin": admin})
            assert r.status_code == 201, r.text
            self.passwords[name] = r.json()["password"]
            r = c.post(f"/users/{name}/tokens", json={"note": "tests"})
            assert r.status_code == 201, r.text
            self.tokens[name] = r.json()["token"]

    def token(self, name: str) -> str:
        if name not in self.tokens:
            self.tokens[name] = self.cli("user", "token", name).stdout.strip()
        return self.tokens[name]

    def http(self, name: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"token {self.token(name)}"} if name else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60)

    def browser_login(self, name: str, password: str | None = None) -> httpx.Client:
        """A cookie session as a browser would have after logging in on the hub's page."""
        c = httpx.Client(base_url=self.url, follow_redirects=True, timeout=60)
        c.get("/hub/login")
        r = c.post(
            "/hub/login",
            data={
                "username": name,
                "password": password or self.passwords[name],
                "_xsrf": c.cookies.get("_xsrf", ""),
            },
        )
        assert r.status_code == 200, r.text[:500]
        return c

    def wait_environments(self, *names: str, timeout: float = 900) -> dict[str, Any]:
        """Wait until each named notebook environment has a usable build (the control plane
        builds them in the background); fails at once on a failed build."""
        with self.admin_http() as c:

            def ready() -> dict[str, Any] | None:
                envs = {e["name"]: e for e in c.get("/environments").json()}
                for name in names:
                    if envs[name]["status"] == "failed" and not envs[name]["usable"]:
                        log = c.get(f"/environments/{name}/log").text[-3000:]
                        raise AssertionError(f"environment {name} failed to build:\n{log}")
                return envs if all(envs[n]["usable"] for n in names) else None

            return self.wait(ready, timeout, f"environments {names}")  # type: ignore[no-any-return]

    def wait(self, predicate: Any, timeout: float = 60, what: str = "condition") -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what}")


def s3_for(creds: dict[str, str]) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=creds["endpoint_url"],
        aws_access_key_id=creds["access_key_id"],
        aws_secret_access_key=creds["secret_access_key"],
        region_name="us-east-1",
        config=Config(signature_version="s3v4", retries={"max_attempts": 1}),
    )


def creds_of(hub: Hub, name: str) -> dict[str, str]:
    with hub.http(name) as c:
        r = c.get("/services/lakehub/api/lake/credentials")
        assert r.status_code == 200, r.text
        assert r.headers["cache-control"] == "no-store"
        return r.json()


def hub_dir() -> Path:
    """A data directory outside pytest's private temp tree, which user accounts cannot enter."""
    path = Path(tempfile.mkdtemp(prefix="lakehub-test-", dir="/tmp"))
    path.chmod(0o711)
    return path


SHARED_ENVS = "LAKEHUB_TEST_ENVIRONMENTS"  # set by the main pytest process, seen by its workers
_OWNS_ENVS = pytest.StashKey[Path]()


def shared_environments() -> Path:
    """One environments directory for every test hub of the run (workers included): a finished
    build of a spec is reused by the next hub instead of being built again (the
    ``environments_dir`` setting; hubs building the same spec at once take turns)."""
    return Path(os.environ[SHARED_ENVS])


def pytest_configure(config: pytest.Config) -> None:
    if SHARED_ENVS not in os.environ:  # the main process (or a run without workers)
        path = Path(tempfile.mkdtemp(prefix="lakehub-test-envs-", dir="/tmp"))
        path.chmod(0o755)  # every user account runs these environments
        os.environ[SHARED_ENVS] = str(path)
        config.stash[_OWNS_ENVS] = path


_STARTED: dict[Path, Hub] = {}  # hubs this process started and has not stopped yet


def pytest_unconfigure(config: pytest.Config) -> None:
    for hub in list(_STARTED.values()):  # a run that ended early (an internal error) leaves
        stop_hub(hub)  # no hub running behind it
    path = config.stash.get(_OWNS_ENVS, None)
    if path is not None:
        shutil.rmtree(path, ignore_errors=True)
        os.environ.pop(SHARED_ENVS, None)


# Modules that run long go first, so parallel workers finish together (the rest follow in order).
# ./dev test passes --no-loadscope-reorder, or xdist would order modules by their test counts.
SLOW_FIRST = (
    "test_spark",
    "test_dask",
    "test_scale_out",
    "test_spark_scaleout",
    "test_environments",
    "test_browser",
    "test_up",
    "test_culling",
    "test_out_of_core",
    "test_ingest_durability",
    "test_limits",
    "test_browser_upload",
)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Work around a CPython 3.11 bug (gh-106905): ``ast.parse`` while another thread parses
    too (a client thread formatting a traceback) can raise ``SystemError: AST constructor
    recursion depth mismatch``; inside pytest's failure report that aborts the whole run."""
    try:
        return (yield)
    except SystemError as err:
        if "recursion depth mismatch" not in str(err):
            raise
        time.sleep(1)
        return pytest.TestReport.from_item_and_call(item, call)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        name = Path(str(item.fspath)).stem
        return SLOW_FIRST.index(name) if name in SLOW_FIRST else len(SLOW_FIRST)

    items.sort(key=rank)  # stable: tests keep their order within a module


def start_hub(
    tmp: Path | None = None, wait_for: tuple[str, ...] = ("datascience",), **settings: str
) -> Hub:
    """A hub of its own; ``wait_for``: environments to wait for (servers start with
    ``datascience`` unless told otherwise; a hub that starts none needs none)."""
    tmp = tmp or hub_dir()
    port = free_port()
    password = secrets.token_urlsafe(12)
    env = {
        **os.environ,
        "LAKEHUB_LAKE_PORT": "0",
        "LAKEHUB_FORWARD_PORT": "0",  # the receivers' defaults (24224, 9880) are one per machine
        "LAKEHUB_INGEST_HTTP_PORT": "0",
        "LAKEHUB_ADMIN_PASSWORD": password,
        # environments build from the package cache the test install filled: no test reaches
        # a package index
        "UV_OFFLINE": "1",
        "LAKEHUB_ENVIRONMENTS_DIR": str(shared_environments()),
        **{f"LAKEHUB_{k.upper()}": v for k, v in settings.items()},
    }
    hub = Hub(tmp / "data", port, password, env)
    _STARTED[hub.data_dir] = hub
    proc = hub.cli(
        "up",
        "--data-dir",
        str(hub.data_dir),
        "--port",
        str(port),
        "--detach",
        check=False,
        timeout=600,
    )
    if proc.returncode != 0:
        logs = (
            "\n".join(
                f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
                for p in sorted((hub.data_dir / "logs").glob("*.log"))
            )
            if (hub.data_dir / "logs").exists()
            else ""
        )
        raise AssertionError(f"lakehub up failed: {proc.stderr}\n{logs}")
    hub.passwords["admin"] = password
    if wait_for:
        hub.wait_environments(*wait_for)
    return hub


def stop_hub(hub: Hub) -> None:
    _STARTED.pop(hub.data_dir, None)
    hub.cli("down", check=False, timeout=120)
    logs = hub.data_dir / "logs"
    if logs.exists():  # kept for whoever reads a failure
        shutil.copytree(logs, ARTIFACTS / "logs" / hub.data_dir.parent.name, dirs_exist_ok=True)
    if hub.data_dir.parent.name.startswith("lakehub-test-"):
        shutil.rmtree(hub.data_dir.parent, ignore_errors=True)


@pytest.fixture(scope="session")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    h = start_hub()
    yield h
    stop_hub(h)


@pytest.fixture(scope="session")
def ingest_hub() -> Iterator[Hub]:
    """A hub for the ingestion, streams and arrays tests: short batches, a small buffer bound,
    no notebook environments to wait for (and its own lake: these tests make many buckets)."""
    h = start_hub(wait_for=(), ingest_batch_seconds="0.2", ingest_buffer_max_bytes=str(4 * 2**20))
    yield h
    stop_hub(h)


_counter = iter(range(1, 10_000))


@pytest.fixture
def new_user(hub: Hub) -> Any:
    """Make a fresh active user; returns its name."""

    def make(prefix: str = "u", admin: bool = False) -> str:
        name = f"{prefix}{next(_counter)}{secrets.token_hex(2)}"
        hub.quick_user(name, admin=admin)
        return name

    return make


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Chromium for a module's browser tests (each test makes its own contexts)."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} missing: run scripts/install-test-system-packages.sh")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=60_000)
        yield b
        b.close()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


# the in-process layer (tests/inproc.py): a platform without a hub, for the API's matrices
from inproc import full_quota, inproc, inproc_user, lake_down, slow_spawner  # noqa: E402, F401
