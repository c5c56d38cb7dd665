"""A real hub on loopback for the whole session, driven through the CLI, HTTP, the SDK and boto3."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hubs import LAKEHUB, Hub, free_port, hub_dir, s3_for

__all__ = ["LAKEHUB", "Hub", "creds_of", "free_port", "hub_dir", "s3_for", "start_hub", "stop_hub"]

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
# MLflow's client reports usage to the internet from a thread of its own unless told not to: the
# tests talk to loopback only (hubs set the same in notebooks and clusters)
os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
# environments, in process as in hubs, build from the package cache the test install filled
os.environ["UV_OFFLINE"] = "1"


def creds_of(hub: Hub, name: str) -> dict[str, str]:
    return hub.credentials(name)


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
    "test_serving_tools",
    "test_serving",
    "test_environments",
    "test_browser",
    "test_up",
    "test_culling",
    "test_ops_hub",
    "test_jobs_hub",
    "test_ops",
    "test_out_of_core",
    "test_ingest_durability",
    "test_limits",
    "test_browser_upload",
)


def pytest_sessionstart(session: pytest.Session) -> None:
    """The same CPython bug (below) at the session's end: schemathesis's plugin imports its report
    writer then (pytest rewrites it, parsing it) while a Dask client's thread may still parse a
    traceback; imported now, while no other thread runs, it is parsed once and safely."""
    with contextlib.suppress(ImportError):
        import schemathesis.reporting.html.writer  # noqa: F401


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Work around a CPython 3.11 bug (gh-106905): ``ast.parse`` while another thread parses
    too (a client thread formatting a traceback) can raise ``SystemError: AST constructor
    recursion depth mismatch``; inside pytest's failure report that aborts the whole run (and
    hides which test failed). Tried again; if the other thread still parses, a plain report."""
    try:
        return (yield)
    except SystemError as err:
        if "recursion depth mismatch" not in str(err):
            raise
    for _ in range(3):
        time.sleep(1)
        with contextlib.suppress(SystemError):
            return pytest.TestReport.from_item_and_call(item, call)
    why = call.excinfo.exconly() if call.excinfo else None  # no source ranges: no parse
    return pytest.TestReport(
        item.nodeid,
        item.location,
        {k: 1 for k in item.keywords},
        "failed" if why else "passed",
        why,
        call.when,
        [],
        call.duration,
        call.start,
        call.stop,
    )


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
    env = {
        # environments build from the package cache the test install filled: no test reaches
        # a package index
        "UV_OFFLINE": "1",
        "LAKEHUB_ENVIRONMENTS_DIR": str(shared_environments()),
    }
    hub: Hub = Hub.create((tmp or hub_dir()) / "data", env, **settings)
    _STARTED[hub.data_dir] = hub
    hub.up()
    if wait_for:
        hub.wait_environments(*wait_for)
    return hub


def stop_hub(hub: Hub) -> None:
    _STARTED.pop(hub.data_dir, None)
    hub.down()
    remove_accounts(hub.data_dir / "homes")  # the accounts its users' servers ran as
    logs = hub.data_dir / "logs"
    if logs.exists():  # kept for whoever reads a failure
        shutil.copytree(logs, ARTIFACTS / "logs" / hub.data_dir.parent.name, dirs_exist_ok=True)
    if hub.data_dir.parent.name.startswith("lakehub-test-"):
        shutil.rmtree(hub.data_dir.parent, ignore_errors=True)


@pytest.fixture(scope="session")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    """The worker's hub for whole flows. Ingestion tests share it: short batches and a small
    buffer bound, so what they wait for happens within a test (a hub start is some 20 CPU-s).
    No metrics store: monitoring's flows have their hubs (test_ops_hub, test_up) and its
    matrices the in-process layer, and a store scraping every component costs each of the
    workers' hubs CPU for the whole run."""
    h = start_hub(
        ingest_batch_seconds="0.2", ingest_buffer_max_bytes=str(4 * 2**20), metrics="false"
    )
    yield h
    stop_hub(h)


@pytest.fixture(scope="session")
def ingest_hub(hub: Hub) -> Hub:
    return hub


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
    """Headless Chromium for a module's browser tests (each test makes its own contexts). Not
    one per worker: while Playwright's sync API is open, its event loop counts as running in
    this thread, and the other modules' ``asyncio.run()`` would refuse to start."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} missing: run scripts/install-system-packages.sh test")
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
# model endpoints on the in-process layer (tests/endpoints_kit.py): replicas' environment, MLflow
from endpoints_kit import mlflow_env, remove_accounts, serving  # noqa: E402, F401
from ingest_client import Forward  # noqa: E402
from inproc import (  # noqa: E402, F401
    full_quota,
    inproc,
    inproc_user,
    lake_down,
    metrics_store,
    slow_spawner,
)


@pytest.fixture(autouse=True)
def _forward_connections_closed() -> Iterator[None]:
    """The Forward connections a test opened are closed after it, however it ended."""
    yield
    Forward.close_all()
