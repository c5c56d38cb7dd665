"""The lake contract.

A lake is an S3 endpoint plus an administrator able to manage identities and buckets. Rules:

- every user identity carries the bucket *patterns* it owns (``alice-*``: full rights) and the
  shared buckets it was granted (``read``: get and list; ``write``: also put and delete
  objects, never the bucket itself); it may act on nothing else, never with unscoped actions;
- :meth:`Lake.set_identities` takes the complete set of user identities and returns only once
  the lake enforces all of it: new keys and grants work, removed keys and grants are refused;
- :meth:`Lake.set_read_only` takes the complete set of buckets (or ``prefix*`` patterns) in
  which new writes must be refused, effective when it returns; reads and deletes keep working
  there, so whoever is over a quota can delete their way back under it;
- no method logs a secret.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

ACCESS_LEVELS = ("read", "write")


@dataclass(frozen=True)
class Identity:
    name: str
    access_key: str
    secret_key: str
    buckets: tuple[str, ...]  # owned: bucket names or prefix patterns ending in '*'
    shared: tuple[tuple[str, str], ...] = ()  # (bucket, "read" | "write") granted to it

    def __repr__(self) -> str:  # never show the secret
        return f"Identity({self.name!r}, {self.access_key!r}, {self.buckets!r}, {self.shared!r})"


class LakeUnavailable(RuntimeError):
    pass


def s3_client(endpoint_url: str, access_key: str, secret_key: str) -> Any:
    import boto3  # imported when first needed: it costs a third of a second
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        region_name="us-east-1",
        config=Config(signature_version="s3v4", retries={"max_attempts": 2, "mode": "standard"}),
    )


class Lake(ABC):
    endpoint_url: str

    @abstractmethod
    def admin(self) -> Any:
        """A boto3 S3 client with the lake administrator's rights."""

    @abstractmethod
    def set_identities(self, identities: list[Identity]) -> None:
        """Make exactly these user identities valid; effective when this returns."""

    def set_read_only(self, buckets: set[str]) -> None:
        """Refuse new objects, parts and buckets in exactly these buckets (``alice-*``: every
        bucket whose name starts with ``alice-``, present and future); effective when it returns."""
        raise NotImplementedError(f"{type(self).__name__} cannot make buckets read-only")

    def ensure_bucket(self, name: str) -> None:
        from botocore.exceptions import ClientError, EndpointConnectionError

        client = self.admin()
        try:
            client.head_bucket(Bucket=name)
        except ClientError as err:
            if err.response["Error"]["Code"] not in ("404", "NoSuchBucket", "NotFound"):
                raise
            client.create_bucket(Bucket=name)
        except EndpointConnectionError as err:
            raise LakeUnavailable(f"the lake at {self.endpoint_url} is not answering") from err

    def wait_key(self, key: str, present: bool, timeout: float = 10.0) -> None:
        """Poll until the lake knows ``key`` (or no longer does)."""
        deadline = time.monotonic() + timeout
        while self._accepts(key, "x-refused-probe") != present:
            if time.monotonic() > deadline:
                raise LakeUnavailable("the lake did not apply the new identities in time")
            time.sleep(0.02)

    def _accepts(self, key: str, secret: str) -> bool:
        """True if the lake recognises the access key (a wrong secret still proves it exists)."""
        from botocore.exceptions import ClientError, EndpointConnectionError

        try:
            s3_client(self.endpoint_url, key, secret).list_buckets()
            return True
        except ClientError as err:
            code = err.response["Error"]["Code"]
            return code not in ("InvalidAccessKeyId", "AccessDenied", "403")
        except EndpointConnectionError as err:
            raise LakeUnavailable(f"the lake at {self.endpoint_url} is not answering") from err
