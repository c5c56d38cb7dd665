"""Start and stop real hubs on loopback: the one launcher of the tests and the benchmarks.

Rules:

* A hub lives in a data directory of its own; :func:`hub_dir` makes a folder for it in /tmp
  (outside pytest's private temporary tree, which user accounts cannot enter).
* Every port is free: the front door gets :func:`free_port`, the lake and both ingestion
  receivers pick their own (``0``), so hubs run side by side.
* The hub is driven as users drive it: ``lakehub`` commands (:meth:`Hub.cli`) and HTTP.
* A ``lakehub`` command that fails raises ``AssertionError`` with its stderr (``check=False``
  hands back the finished process instead).
* Every HTTP client a hub hands out (``http``, ``admin_http``, ``browser_login``) lives until
  :meth:`Hub.down` closes it, so a test may use one without ``with`` and leak nothing.
* Nothing here imports pytest: the benchmarks import this module too (``bench/benchlib.py``).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from lakehub.client import tls_context

LAKEHUB = [sys.executable, "-m", "lakehub.cli"]
API = "/services/lakehub/api"


def free_port() -> int:
    """A free port below the ephemeral range, claimed as the hub claims its own."""
    from lakehub.server.runtime import free_port

    return free_port()


def hub_dir(prefix: str = "lakehub-test-") -> Path:
    """A new folder in /tmp that user accounts can walk into (mode 0711)."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    path.chmod(0o711)
    return path


def s3_for(creds: Mapping[str, str], max_pool_connections: int = 10) -> Any:
    """A boto3 S3 client for lake credentials as the API hands them out (no retries)."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=creds["endpoint_url"],
        aws_access_key_id=creds["access_key_id"],
        aws_secret_access_key=creds["secret_access_key"],
        region_name="us-east-1",
        config=Config(
            signature_version="s3v4",
            max_pool_connections=max_pool_connections,
            retries={"max_attempts": 1},
        ),
    )


class ApiUser:
    """What a test does through the control plane's API, the same on a real hub (``Hub``) and
    on the in-process layer (``inproc.InProc``): each gives ``url``, ``tokens``, ``passwords``,
    ``clients``, ``admin_http()`` and ``token()``. Every client handed out is kept and closed
    with the hub, never collected with its sockets open."""

    url: str
    tokens: dict[str, str]
    passwords: dict[str, str]
    clients: list[httpx.Client]

    def admin_http(self) -> httpx.Client:
        raise NotImplementedError

    def token(self, name: str) -> str:
        raise NotImplementedError

    def _keep(self, client: httpx.Client) -> httpx.Client:
        self.clients.append(client)
        return client

    def close_clients(self) -> None:
        for client in self.clients:
            client.close()
        self.clients.clear()

    def quick_user(self, name: str, admin: bool = False) -> None:
        """Create an active user through the API, with a password and a token."""
        with self.admin_http() as c:
            r = c.post("/users", json={"name": name, "admin": admin})
            assert r.status_code == 201, r.text
            self.passwords[name] = r.json()["password"]
            r = c.post(f"/users/{name}/tokens", json={"note": "tests"})
            assert r.status_code == 201, r.text
            self.tokens[name] = r.json()["token"]

    def http(self, name: str | None = None) -> httpx.Client:
        """A client for ``name`` (none: anonymous), with the front door as base URL."""
        headers = {"Authorization": f"token {self.token(name)}"} if name else {}
        return self._keep(
            httpx.Client(base_url=self.url, headers=headers, timeout=60, verify=tls_context())
        )

    def credentials(self, name: str) -> dict[str, str]:
        """The lake credentials the API hands ``name`` (never to be cached on the way)."""
        with self.http(name) as c:
            r = c.get(f"{API}/lake/credentials")
            assert r.status_code == 200, r.text
            assert r.headers["cache-control"] == "no-store"
            data: dict[str, str] = r.json()
            return data

    def wait(self, predicate: Any, timeout: float = 60, what: str = "condition") -> Any:
        """``predicate()``'s first true value, polled every 0.2 s (fails after ``timeout``)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what}")


@dataclass
class Hub(ApiUser):
    """One hub: its data directory, front-door port, administrator password and the
    environment its ``lakehub`` commands run with; the passwords and tokens of its users."""

    data_dir: Path
    port: int
    admin_password: str
    env: dict[str, str]
    passwords: dict[str, str] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)
    clients: list[httpx.Client] = field(default_factory=list, repr=False)

    @classmethod
    def create(cls, data_dir: Path, env: Mapping[str, str] | None = None, **settings: str) -> Any:
        """A hub not started yet: ``env`` adds raw variables, each setting ``name=value``
        becomes ``LAKEHUB_NAME``."""
        password = secrets.token_urlsafe(12)
        full = {
            **os.environ,
            "LAKEHUB_LAKE_PORT": "0",
            "LAKEHUB_FORWARD_PORT": "0",  # the receivers' defaults (24224, 9880): one a machine
            "LAKEHUB_INGEST_HTTP_PORT": "0",
            "LAKEHUB_ADMIN_PASSWORD": password,
            # no warm Spark clusters unless a test asks (tests/test_spark_pool.py): each costs
            # some 15 CPU-s to start
            "LAKEHUB_COMPUTE_POOL_SPARK": "0",
            **(env or {}),
            **{f"LAKEHUB_{k.upper()}": v for k, v in settings.items()},
        }
        full.pop("LAKEHUB_DATA_DIR", None)  # the data directory is data_dir, always
        return cls(data_dir, free_port(), password, full)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api(self) -> str:
        return f"{self.url}{API}"

    def cli(
        self, *args: str, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """``lakehub ARGS`` on this hub's data directory (unless ARGS name one)."""
        argv = [*LAKEHUB, *args]
        if "--data-dir" not in args:
            argv += ["--data-dir", str(self.data_dir)]
        proc = subprocess.run(argv, capture_output=True, text=True, env=self.env, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"lakehub {' '.join(args)} failed: {proc.stderr[-3000:]}")
        return proc

    def up(self, timeout: float = 600) -> None:
        """``lakehub up --detach``; a failure raises with the end of each component's log."""
        proc = self.cli("up", "--port", str(self.port), "--detach", check=False, timeout=timeout)
        if proc.returncode != 0:
            logs = self.data_dir / "logs"
            tails = "".join(
                f"\n--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
                for p in (sorted(logs.glob("*.log")) if logs.exists() else [])
            )
            raise AssertionError(f"lakehub up failed: {proc.stderr}{tails}")
        self.passwords["admin"] = self.admin_password
        # ready is a login; the tests use every component: each has answered once
        self.wait(lambda: self.runtime().get("settled"), timeout, "every component to answer")

    def down(self, timeout: float = 120) -> list[str]:
        """The clients handed out closed, then ``lakehub down``; what went wrong (nothing
        raises: this runs on the way out)."""
        self.close_clients()
        proc = self.cli("down", check=False, timeout=timeout)
        return [] if proc.returncode == 0 else [f"lakehub down: {proc.stderr.strip()[-1500:]}"]

    def status(self) -> dict[str, Any]:
        proc = self.cli("status", "--json", check=False)
        assert proc.stdout, f"lakehub status printed nothing: {proc.stderr}"
        data: dict[str, Any] = json.loads(proc.stdout)
        return data

    def runtime(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.data_dir / "run" / "runtime.json").read_text())
        return data

    def service_token(self) -> str:
        return (self.data_dir / "state" / "service.token").read_text().strip()

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
        return httpx.Client(
            base_url=self.api,
            headers={"Authorization": f"token {self.service_token()}"},
            timeout=60,
            verify=tls_context(),
        )

    def token(self, name: str) -> str:
        if name not in self.tokens:
            self.tokens[name] = self.cli("user", "token", name).stdout.strip()
        return self.tokens[name]

    def browser_login(self, name: str, password: str | None = None) -> httpx.Client:
        """A cookie session as a browser would have after logging in on the hub's page."""
        c = self._keep(
            httpx.Client(base_url=self.url, follow_redirects=True, timeout=60, verify=tls_context())
        )
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


@dataclass
class S3Service:
    """An S3 service with an IAM API that LakeHub does not run (``lake_backend = "s3-iam"``):
    SeaweedFS as an operator runs it, with an administrator of its own and its IAM API writable.
    :meth:`start` returns once it answers; :meth:`settings` point a hub at it."""

    root: Path
    url: str = ""
    key: str = field(default_factory=lambda: "ADMIN" + secrets.token_hex(8).upper())
    secret: str = field(default_factory=lambda: secrets.token_urlsafe(30), repr=False)
    proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60) -> S3Service:
        from lakehub.server.lake.cluster import operator_identities
        from lakehub.server.lake.seaweedfs import local_sockets, weed_binary
        from lakehub.server.vault import write_private

        config = self.root / "s3.json"
        write_private(config, operator_identities(self.key, self.secret))
        ports = {name: free_port() for name in ("master", "volume", "filer", "s3", "admin")}
        argv = [
            weed_binary(),
            "-logtostderr",
            "mini",
            f"-dir={self.root / 'weed'}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-s3.config={config}",
            "-s3.iam.readOnly=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-webdav=false",
            "-admin.ui=false",
            "-master.telemetry=false",
            "-volume.max=0",
            "-master.volumeSizeLimitMB=256",
            *local_sockets(self.root / "weed"),
        ]
        for name, port in ports.items():
            argv += [f"-{name}.port={port}", f"-{name}.port.grpc={free_port()}"]
        (self.root / "weed").mkdir(parents=True, exist_ok=True)
        with open(self.root / "weed.log", "ab") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=log, cwd=self.root)
        self.url = f"http://127.0.0.1:{ports['s3']}"
        deadline = time.monotonic() + timeout
        while not answers(self.url + "/"):
            alive = self.proc.poll() is None and time.monotonic() < deadline
            assert alive, (self.root / "weed.log").read_text(errors="replace")[-3000:]
            time.sleep(0.1)
        return self

    def settings(self, prefix: str = "lakehub-") -> dict[str, str]:
        return {
            "lake_backend": "s3-iam",
            "lake_endpoint_url": self.url,
            "lake_admin_key_id": self.key,
            "lake_admin_secret": self.secret,
            "lake_iam_prefix": prefix,
        }

    def admin(self) -> dict[str, str]:
        """The operator's credentials, in the shape the API hands a user's."""
        return {
            "endpoint_url": self.url,
            "access_key_id": self.key,
            "secret_access_key": self.secret,
        }

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@contextlib.contextmanager
def lake_cluster(root: Path) -> Iterator[tuple[Any, dict[str, subprocess.Popen[bytes]]]]:
    """A SeaweedFS cluster as ``lakehub.server.lake.cluster`` renders it, on four hosts played
    by network namespaces on one bridge (``tests/netns.py``; root only): a gateway and three
    volume servers, each host's command run from its folder under ``root``. Yields the rendered
    ``Cluster`` (``.settings`` point a hub at it) and each host's process; all are killed after."""
    import netns
    from lakehub.server.lake.cluster import MASTER_PORT, S3_PORT, render
    from lakehub.server.lake.seaweedfs import weed_binary

    def nodes(gateway: str) -> int:
        try:
            topo = httpx.get(f"http://{gateway}:{MASTER_PORT}/dir/status", timeout=2).json()
        except (httpx.TransportError, ValueError):
            return 0
        dcs = topo["Topology"].get("DataCenters") or []
        return sum(len(r.get("DataNodes") or []) for dc in dcs for r in dc.get("Racks") or [])

    procs: dict[str, subprocess.Popen[bytes]] = {}
    with netns.hosts("10.232", 4) as (_, hosts):
        try:
            gw, volumes = hosts[0][1], hosts[1:]
            rendered = render(gw, [a for _, a in volumes], root, weed=weed_binary())
            for (ns, _), host in zip(hosts, rendered.hosts, strict=True):
                with open(root / f"{host.address}.log", "ab") as log:
                    procs[host.address] = subprocess.Popen(
                        ["ip", "netns", "exec", ns, *host.argv],
                        cwd=host.folder,
                        env={**os.environ, **host.env},
                        stdout=log,
                        stderr=log,
                    )
            deadline = time.monotonic() + 90
            while nodes(gw) < len(volumes) or not answers(f"http://{gw}:{S3_PORT}/"):
                dead = [a for a, p in procs.items() if p.poll() is not None]
                if dead or time.monotonic() > deadline:
                    logs = {a: (root / f"{a}.log").read_text()[-1500:] for a in procs}
                    raise AssertionError(f"the cluster did not come up (dead: {dead}): {logs}")
                time.sleep(0.2)
            yield rendered, procs
        finally:
            for p in procs.values():
                p.kill()
                p.wait(10)


def answers(url: str) -> bool:
    """True if something answers HTTP at ``url`` (any status)."""
    try:
        httpx.get(url, timeout=1, verify=tls_context())
    except httpx.TransportError:
        return False
    return True
