"""The SDK's HTTP client. Light on purpose: notebook environments carry only httpx and boto3."""

from __future__ import annotations

import functools
import os
import ssl
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

API_PREFIX = "/services/lakehub"


@functools.cache
def tls_context() -> ssl.SSLContext:
    """httpx's default TLS settings (certifi's bundle, or ``SSL_CERT_FILE``/``SSL_CERT_DIR``),
    made once per process and shared by its clients (``verify=tls_context()``): httpx otherwise
    reads the whole bundle for every client it makes, 44 ms of CPU each on a 2-core host, even
    for a plain ``http://`` call."""
    return httpx.create_ssl_context()


class LakeHubError(RuntimeError):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"{status}: {detail}")
        self.status = status
        self.detail = detail


@dataclass(frozen=True)
class LakeCredentials:
    endpoint_url: str
    access_key_id: str
    secret_access_key: str
    bucket: str
    region: str = "us-east-1"

    def __repr__(self) -> str:
        return (
            f"LakeCredentials(endpoint_url={self.endpoint_url!r}, "
            f"access_key_id={self.access_key_id!r}, bucket={self.bucket!r})"
        )

    def boto3_kwargs(self) -> dict[str, str]:
        return {
            "endpoint_url": self.endpoint_url,
            "aws_access_key_id": self.access_key_id,
            "aws_secret_access_key": self.secret_access_key,
            "region_name": self.region,
        }

    def boto3_client(self) -> Any:
        import boto3

        return boto3.client("s3", **self.boto3_kwargs())

    def storage_options(self) -> dict[str, Any]:
        """For pandas/s3fs: ``pd.read_parquet(url, storage_options=creds.storage_options())``."""
        return {
            "key": self.access_key_id,
            "secret": self.secret_access_key,
            "client_kwargs": {"endpoint_url": self.endpoint_url, "region_name": self.region},
        }

    def filesystem(self) -> Any:
        """An fsspec filesystem (s3fs) with these credentials."""
        import s3fs

        return s3fs.S3FileSystem(**self.storage_options())


@dataclass(frozen=True, repr=False)
class ConnectionCredentials(LakeCredentials):
    """An external S3 connection's endpoint and keys (``bucket`` may be empty)."""

    name: str = ""

    def __repr__(self) -> str:
        return (
            f"ConnectionCredentials(name={self.name!r}, endpoint_url={self.endpoint_url!r}, "
            f"access_key_id={self.access_key_id!r}, bucket={self.bucket!r})"
        )


class Connections:
    """Your external S3 connections: ``client.connections.get("archive").boto3_client()``."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def list(self) -> list[dict[str, Any]]:
        """Name, endpoint, region, bucket and access key of each (never the secret)."""
        data: list[dict[str, Any]] = self._client.request("GET", "/api/connections")
        return data

    def get(self, name: str) -> ConnectionCredentials:
        data = self._client.request("GET", f"/api/connections/{quote(name, safe='')}/credentials")
        return ConnectionCredentials(
            endpoint_url=data["endpoint_url"],
            access_key_id=data["access_key_id"],
            secret_access_key=data["secret_access_key"],
            bucket=data["bucket"],
            region=data["region"],
            name=data["name"],
        )

    def create(
        self,
        name: str,
        endpoint_url: str,
        access_key_id: str,
        secret_access_key: str,
        *,
        region: str = "",
        bucket: str = "",
        verify: bool = True,
    ) -> dict[str, Any]:
        """Register a connection; the endpoint must accept the keys unless ``verify=False``."""
        data: dict[str, Any] = self._client.request(
            "POST",
            "/api/connections",
            json={
                "name": name,
                "endpoint_url": endpoint_url,
                "access_key_id": access_key_id,
                "secret_access_key": secret_access_key,
                "region": region,
                "bucket": bucket,
                "verify": verify,
            },
        )
        return data

    def delete(self, name: str) -> None:
        self._client.request("DELETE", f"/api/connections/{quote(name, safe='')}")


class Env:
    """Environment variables for your notebook servers (applied at a server's next start)."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def list(self) -> list[dict[str, Any]]:
        """Name, ``secret`` and value of each; a secret variable's value is None."""
        data: list[dict[str, Any]] = self._client.request("GET", "/api/env")
        return data

    def set(self, name: str, value: str, secret: bool = False) -> dict[str, Any]:
        """Create or replace ``name``; a secret value is never shown again."""
        data: dict[str, Any] = self._client.request(
            "PUT", f"/api/env/{quote(name, safe='')}", json={"value": value, "secret": secret}
        )
        return data

    def delete(self, name: str) -> None:
        self._client.request("DELETE", f"/api/env/{quote(name, safe='')}")


class Servers:
    """Your notebook servers: several, each with an environment and a size."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def options(self) -> dict[str, Any]:
        """The environments and sizes you may pick, your defaults, quotas and idle timeout."""
        data: dict[str, Any] = self._client.request("GET", "/api/notebooks/options")
        return data

    def list(self) -> list[dict[str, Any]]:
        data: list[dict[str, Any]] = self._client.request("GET", "/api/servers")
        return data

    def start(
        self,
        name: str = "default",
        environment: str | None = None,
        size: str | None = None,
        env: dict[str, str] | None = None,
        secret_env: dict[str, str] | None = None,
        wait: float = 120,
    ) -> dict[str, Any]:
        """Start a server and wait (up to ``wait`` seconds) until it is ready.

        ``env`` and ``secret_env`` are saved as your variables first (secret ones encrypted and
        never shown again); they reach every server you start from now on."""
        given: dict[str, Any] = {k: {"value": v, "secret": False} for k, v in (env or {}).items()}
        given.update({k: {"value": v, "secret": True} for k, v in (secret_env or {}).items()})
        body = {"name": name, "environment": environment, "size": size, "env": given}
        server: dict[str, Any] = self._client.request("POST", "/api/servers", json=body)
        deadline = time.monotonic() + wait
        while not server["ready"] and time.monotonic() < deadline:
            time.sleep(0.2)
            mine = {s["name"]: s for s in self.list()}
            if name not in mine:
                raise LakeHubError(502, f"server {name!r} stopped while starting")
            server = mine[name]
        return server

    def stop(self, name: str = "default") -> None:
        self._client.request("DELETE", f"/api/servers/{quote(name, safe='')}")


class Lake:
    def __init__(self, client: Client) -> None:
        self._client = client

    def credentials(self) -> LakeCredentials:
        data = self._client.request("GET", "/api/lake/credentials")
        return LakeCredentials(
            endpoint_url=data["endpoint_url"],
            access_key_id=data["access_key_id"],
            secret_access_key=data["secret_access_key"],
            bucket=data["bucket"],
            region=data.get("region", "us-east-1"),
        )

    def rotate(self) -> LakeCredentials:
        self._client.request("POST", "/api/lake/credentials/rotate")
        return self.credentials()


class Client:
    def __init__(self, url: str, token: str, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self._http = httpx.Client(
            base_url=self.url,
            timeout=timeout,
            headers={"Authorization": f"token {token}"},
            verify=tls_context(),
        )
        self.lake = Lake(self)
        self.connections = Connections(self)
        self.env = Env(self)
        self.servers = Servers(self)

    def request(self, method: str, path: str, raw: bool = False, **kw: Any) -> Any:
        """The answer's JSON (its bytes when ``raw``); LakeHubError for a refusal."""
        try:
            resp = self._http.request(method, path, **kw)
        except httpx.TransportError as err:
            raise LakeHubError(0, f"LakeHub at {self.url} is not answering: {err}") from None
        if resp.status_code >= 400:
            try:
                detail = resp.json().get("detail", resp.text)
            except ValueError:
                detail = resp.text
            raise LakeHubError(resp.status_code, str(detail))
        if raw:
            return resp.content
        return resp.json() if resp.content else None

    def me(self) -> dict[str, Any]:
        data: dict[str, Any] = self.request("GET", "/api/me")
        return data

    def close(self) -> None:
        self._http.close()

    def __del__(self) -> None:
        # a client dropped without close() lets go of its connections when it is collected
        http = getattr(self, "_http", None)
        if http is not None:
            http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def connect(url: str | None = None, token: str | None = None, **kwargs: Any) -> Client:
    """Connect to LakeHub: from a notebook server's environment, or with a URL and a token.

    ``url`` is the hub's address (``http://127.0.0.1:8000``) or the API's own.
    """
    url = url or os.environ.get("LAKEHUB_API_URL")
    token = token or os.environ.get("LAKEHUB_TOKEN") or os.environ.get("JUPYTERHUB_API_TOKEN")
    if not url or not token:
        raise LakeHubError(0, "no hub found: pass connect(url, token) outside a notebook server")
    url = url.rstrip("/")
    if not url.endswith(API_PREFIX):
        url += API_PREFIX
    return Client(url, token, **kwargs)


_default: Client | None = None


def default(client: Client | None = None) -> Client:
    """``client`` if one is given, else this process's own, made by :func:`connect` from the
    environment on first use and shared by every SDK call after it (a client made for one call
    and dropped would leave its connections open)."""
    global _default
    if client is not None:
        return client
    if _default is None:
        _default = connect()
    return _default
