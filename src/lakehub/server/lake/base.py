"""The lake contract.

A lake is an S3 endpoint plus an administrator able to manage identities and buckets. The
setting ``lake_backend`` chooses the implementation (:func:`lakehub.server.lake.open_lake`).
Callers use the methods below, never the administrator's client itself. Rules:

- every user identity carries the bucket *patterns* it owns (``alice-*``: full rights) and the
  shared buckets it was granted (``read``: get and list; ``write``: also put and delete
  objects, never the bucket itself); it may act on nothing else, never with unscoped actions;
- :meth:`Lake.set_identities` takes the complete set of user identities and returns only once
  the lake enforces all of it: new keys and grants work, removed keys and grants are refused;
  it returns the names whose key it cannot honour, because only the lake may issue keys and it
  did not issue that one (the caller gives those users a key from :meth:`Lake.issue_key`);
- :meth:`Lake.issue_key` makes a user's next key (a lake that takes any key: a random one);
  the key works once :meth:`Lake.set_identities` has been given it;
- :meth:`Lake.set_read_only` takes the complete set of buckets (or ``prefix*`` patterns) in
  which new writes must be refused, effective when it returns; reads and deletes keep working
  there, so whoever is over a quota can delete their way back under it;
- :meth:`Lake.process` is what ``lakehub up`` runs and supervises for the lake (``None``: the
  lake runs elsewhere); :meth:`Lake.prepare` is called before that process starts; a class whose
  lake listens on this machine's ``lake_port`` says so (``local``), and ``up`` checks the port;
- no method logs a secret.
"""

from __future__ import annotations

import secrets
import string
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from lakehub.server.config import Settings
    from lakehub.server.runtime import Runtime, Tokens

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


@dataclass(frozen=True)
class LakeProcess:
    """What ``lakehub up`` starts and supervises for the lake."""

    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    pid_file: Path | None = None


def random_key() -> tuple[str, str]:
    """An access key and secret of LakeHub's making, for a lake that takes any key."""
    alphabet = string.ascii_uppercase + string.digits
    return "LH" + "".join(secrets.choice(alphabet) for _ in range(18)), secrets.token_urlsafe(30)


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
    local: ClassVar[bool] = False  # it runs on this machine, on the setting lake_port

    @classmethod
    @abstractmethod
    def of_hub(cls, settings: Settings, runtime: Runtime, tokens: Tokens) -> Lake:
        """The lake of a running hub, as every process of the hub sees it."""

    @classmethod
    def check(cls, settings: Settings) -> None:
        """Raise ``FileNotFoundError`` or ``SettingsError`` with a one-line reason if ``lakehub
        up`` could not start this lake (a binary missing); cheap, before anything starts."""
        return None

    def process(self) -> LakeProcess | None:
        """The process ``lakehub up`` runs for the lake; ``None`` (the default): none."""
        return None

    def prepare(self, identities: list[Identity]) -> list[str]:
        """Before :meth:`process` starts: make exactly these identities valid once it runs.
        The default, for a lake that is already running, sets them at once (and answers as
        :meth:`set_identities`)."""
        return self.set_identities(identities)

    def issue_key(self, name: str) -> tuple[str, str]:
        """A new access key and secret for user ``name``; the default: a random one."""
        return random_key()

    @abstractmethod
    def admin(self) -> Any:
        """A boto3 S3 client with the lake administrator's rights, for this class's methods."""

    @abstractmethod
    def set_identities(self, identities: list[Identity]) -> list[str]:
        """Make exactly these user identities valid; effective when this returns. Returns the
        names whose key this lake did not issue and refuses (none, for a lake that takes any)."""

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

    def buckets(self) -> list[str]:
        """Every bucket's name; raises ``LakeUnavailable`` if the lake does not answer."""
        from botocore.exceptions import EndpointConnectionError

        try:
            found = self.admin().list_buckets().get("Buckets", [])
        except EndpointConnectionError as err:
            raise LakeUnavailable(f"the lake at {self.endpoint_url} is not answering") from err
        return [b["Name"] for b in found]

    def usage(self, buckets: list[str]) -> tuple[int, int]:
        """Bytes and objects in these buckets (parts of unfinished multipart uploads count as
        bytes); a bucket deleted meanwhile counts as empty."""
        from botocore.exceptions import ClientError

        s3 = self.admin()
        size = count = 0
        for bucket in buckets:
            try:
                for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
                    for obj in page.get("Contents", []):
                        size += obj["Size"]
                        count += 1
                for page in s3.get_paginator("list_multipart_uploads").paginate(Bucket=bucket):
                    for up in page.get("Uploads", []):
                        parts = s3.get_paginator("list_parts").paginate(
                            Bucket=bucket, Key=up["Key"], UploadId=up["UploadId"]
                        )
                        size += sum(p["Size"] for pg in parts for p in pg.get("Parts", []))
            except ClientError as err:
                if err.response["Error"]["Code"] not in ("NoSuchBucket", "NoSuchUpload", "404"):
                    raise
        return size, count

    def put(self, bucket: str, key: str, body: bytes) -> None:
        """Write one object as the administrator (the ingestion writer acts for every stream);
        raises the S3 client's errors (``botocore.exceptions.ClientError``: refused)."""
        self.admin().put_object(Bucket=bucket, Key=key, Body=body)

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
