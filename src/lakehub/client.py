"""The SDK's HTTP client. Light on purpose: notebook environments carry only httpx and boto3."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import httpx

API_PREFIX = "/services/lakehub"


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
        return (f"LakeCredentials(endpoint_url={self.endpoint_url!r}, "
                f"access_key_id={self.access_key_id!r}, bucket={self.bucket!r})")  # fmt: skip

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
        return {"key": self.access_key_id, "secret": self.secret_access_key,
                "client_kwargs": {"endpoint_url": self.endpoint_url}}  # fmt: skip


class Lake:
    def __init__(self, client: Client) -> None:
        self._client = client

    def credentials(self) -> LakeCredentials:
        data = self._client.request("GET", "/api/lake/credentials")
        return LakeCredentials(
            endpoint_url=data["endpoint_url"], access_key_id=data["access_key_id"],
            secret_access_key=data["secret_access_key"], bucket=data["bucket"],
            region=data.get("region", "us-east-1"),
        )  # fmt: skip

    def rotate(self) -> LakeCredentials:
        self._client.request("POST", "/api/lake/credentials/rotate")
        return self.credentials()


class Client:
    def __init__(self, url: str, token: str, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.url, timeout=timeout, headers={"Authorization": f"token {token}"}
        )
        self.lake = Lake(self)

    def request(self, method: str, path: str, **kw: Any) -> Any:
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
        return resp.json() if resp.content else None

    def me(self) -> dict[str, Any]:
        data: dict[str, Any] = self.request("GET", "/api/me")
        return data

    def close(self) -> None:
        self._http.close()

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
