"""External S3 connections: endpoints (AWS, Ceph, another SeaweedFS) a user registers by name.

Each user's connections are their own: nobody else sees, reads, browses or deletes them, and
administrators are no exception (another user's name answers "no such connection"). The secret
is encrypted with the hub's vault key like lake secrets, is returned only to its owner, and never
reaches the audit trail or a log. On creation the credentials are tried against the endpoint
(``head_bucket`` when a bucket is given, else ``list_buckets``) unless the caller opts out.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from lakehub.server.db import Connection, User
from lakehub.server.identity.users import Directory, UserError, valid_name
from lakehub.server.schema import Instant

REGION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
BUCKET_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{1,253}[A-Za-z0-9]$")
ACCESS_KEY_RE = re.compile(r"^[\x21-\x7e]{1,256}$")  # printable ASCII, no blanks
MAX_SECRET = 1024
RESERVED = frozenset({"default"})  # the AWS config file's own section: the user's lake
VERIFY_TIMEOUT = 10.0  # seconds, per attempt


class ConnectionView(BaseModel):
    """A connection as lists show it: everything but the secret."""

    model_config = ConfigDict(frozen=True)

    name: str
    endpoint_url: str
    region: str
    bucket: str
    access_key_id: str
    created_at: Instant


class ConnectionSecret(ConnectionView):
    """The connection with its secret: for its owner only."""

    secret_access_key: str = Field(repr=False)


def check_endpoint(url: str) -> str:
    """An ``http(s)://host[:port][/path]`` URL, or a :class:`UserError` that says what is wrong."""
    url = url.strip()
    if not url:
        raise UserError("endpoint is missing: give its URL, e.g. https://s3.example.org")
    if any(c.isspace() for c in url) or len(url) > 512:
        raise UserError("endpoint must be one URL of at most 512 characters, without spaces")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise UserError(f"endpoint {url!r} must start with http:// or https://")
    try:
        host, _ = parts.hostname, parts.port
    except ValueError:
        raise UserError(f"endpoint {url!r} has an invalid port") from None
    if not host:
        raise UserError(f"endpoint {url!r} names no host")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise UserError("endpoint must not carry credentials, a query or a fragment")
    return url.rstrip("/")


def check_fields(name: str, region: str, access_key: str, secret: str, bucket: str) -> None:
    valid_name(name, "connection")
    if name in RESERVED:
        raise UserError(f"connection name {name!r} is reserved")
    if not REGION_RE.match(region):
        raise UserError(f"invalid region {region!r}: letters, digits, '-', '_' or '.'")
    if not ACCESS_KEY_RE.match(access_key):
        raise UserError("access key is missing or has blanks or unusual characters")
    if not secret or len(secret) > MAX_SECRET:
        raise UserError(f"secret key is missing or longer than {MAX_SECRET} characters")
    if bucket and not BUCKET_RE.match(bucket):
        raise UserError(f"invalid bucket name {bucket!r}")


def s3_client(endpoint_url: str, region: str, access_key: str, secret: str) -> Any:
    import boto3  # a third of a second: only when needed
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        region_name=region,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret,
        config=Config(
            signature_version="s3v4",
            connect_timeout=VERIFY_TIMEOUT,
            read_timeout=VERIFY_TIMEOUT,
            retries={"max_attempts": 1},
        ),
    )


REFUSED = {
    "InvalidAccessKeyId": "the endpoint does not know this access key",
    "SignatureDoesNotMatch": "the secret key does not match the access key",
    "AccessDenied": "the endpoint refused these credentials (access denied)",
    "403": "the endpoint refused these credentials (access denied)",
    "NoSuchBucket": "no such bucket at this endpoint",
    "404": "no such bucket at this endpoint",
    "NotFound": "no such bucket at this endpoint",
}


def verify(endpoint_url: str, region: str, access_key: str, secret: str, bucket: str) -> None:
    """One cheap call with these credentials; a :class:`UserError` (400) saying why it failed."""
    from botocore.exceptions import BotoCoreError, ClientError

    s3 = s3_client(endpoint_url, region, access_key, secret)
    try:
        if bucket:
            s3.head_bucket(Bucket=bucket)
        else:
            s3.list_buckets()
    except ClientError as err:
        code = str(err.response.get("Error", {}).get("Code", ""))
        reason = REFUSED.get(code) or f"the endpoint answered {code or 'an error'}"
        raise UserError(f"cannot use {endpoint_url}: {reason}; nothing was saved") from None
    except BotoCoreError as err:
        raise UserError(f"cannot reach {endpoint_url}: {err}; nothing was saved") from None


class Connections:
    """Per-user connections. ``on_change(owner)`` runs after each change (the notebook profiles)."""

    _lock = threading.Lock()  # changes and the profile rewrites they cause happen in order

    def __init__(
        self, directory: Directory, on_change: Callable[[str], None] | None = None
    ) -> None:
        self.directory = directory
        self.db = directory.db
        self.vault = directory.vault
        self.on_change = on_change

    def create(
        self,
        owner: str,
        name: str,
        endpoint_url: str,
        access_key: str,
        secret: str,
        *,
        region: str = "",
        bucket: str = "",
        verify_first: bool = True,
        actor: str | None = None,
    ) -> ConnectionView:
        endpoint_url = check_endpoint(endpoint_url)
        region, bucket = region.strip() or "us-east-1", bucket.strip()
        access_key = access_key.strip()
        check_fields(name, region, access_key, secret, bucket)
        with self.db.session() as s:
            self._owner(s, owner)
            if self._find(s, owner, name) is not None:
                raise UserError(f"you already have a connection named {name!r}", 409)
        if verify_first:
            verify(endpoint_url, region, access_key, secret, bucket)
        with self._lock:
            with self.db.session() as s:
                user = self._owner(s, owner)
                if self._find(s, owner, name) is not None:
                    raise UserError(f"you already have a connection named {name!r}", 409)
                s.add(
                    Connection(
                        owner_id=user.id,
                        name=name,
                        endpoint_url=endpoint_url,
                        region=region,
                        access_key=access_key,
                        secret_enc=self.vault.encrypt(secret),
                        bucket=bucket,
                    )
                )
                detail = endpoint_url + (f" bucket {bucket}" if bucket else "")
                detail += "" if verify_first else " (not verified)"
                self.directory.record_event(
                    s, actor or owner, "connection.create", f"{owner}/{name}", detail
                )
            self._changed(owner)
        return self.get(owner, name)

    def owned_by(self, owner: str) -> list[ConnectionView]:
        with self.db.session() as s:
            user = self._owner(s, owner)
            rows = s.scalars(
                select(Connection).where(Connection.owner_id == user.id).order_by(Connection.name)
            )
            return [_view(c) for c in rows]

    def get(self, owner: str, name: str) -> ConnectionView:
        with self.db.session() as s:
            return _view(self._one(s, owner, name))

    def credentials(self, owner: str, name: str) -> ConnectionSecret:
        """Everything, the secret included: for its owner only."""
        with self.db.session() as s:
            c = self._one(s, owner, name)
            secret = self.vault.decrypt(c.secret_enc)
            return ConnectionSecret(**_view(c).model_dump(), secret_access_key=secret)

    def client(self, owner: str, name: str) -> Any:
        """A boto3 S3 client with the connection's credentials."""
        c = self.credentials(owner, name)
        return s3_client(c.endpoint_url, c.region, c.access_key_id, c.secret_access_key)

    def delete(self, owner: str, name: str, actor: str | None = None) -> None:
        with self._lock:
            with self.db.session() as s:
                s.delete(self._one(s, owner, name))
                self.directory.record_event(
                    s, actor or owner, "connection.delete", f"{owner}/{name}"
                )
            self._changed(owner)

    # helpers -------------------------------------------------------------------------------
    def _changed(self, owner: str) -> None:
        if self.on_change is not None:
            self.on_change(owner)

    def _owner(self, s: Session, owner: str) -> User:
        user = s.scalar(select(User).where(User.name == owner))
        if user is None or user.status != "active":
            raise UserError(f"no active user named {owner!r}", 404)
        return user

    def _find(self, s: Session, owner: str, name: str) -> Connection | None:
        return s.scalar(
            select(Connection)
            .join(User, User.id == Connection.owner_id)
            .where(User.name == owner, Connection.name == name)
        )

    def _one(self, s: Session, owner: str, name: str) -> Connection:
        c = self._find(s, owner, name)
        if c is None:
            raise UserError(f"no connection named {name!r}", 404)
        return c


def _view(c: Connection) -> ConnectionView:
    return ConnectionView(
        name=c.name,
        endpoint_url=c.endpoint_url,
        region=c.region,
        bucket=c.bucket,
        access_key_id=c.access_key,
        created_at=c.created_at,
    )
