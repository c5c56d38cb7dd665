"""``lakehub lake ls | cp | rm | mb | share | unshare``: the lake from a shell, as a user.

Credentials come from the notebook server's environment (``AWS_*``) or, anywhere else, from the
hub with ``--hub URL --token TOKEN`` (or ``LAKEHUB_API_URL`` / ``LAKEHUB_TOKEN``). Large
transfers are multipart (boto3's transfer manager) with a progress bar. A write the lake refuses
because of a quota is reported as such (the hub is asked which quota), and a multipart upload that
fails is aborted, so nothing is left half-written.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from lakehub.cli._common import HUB, TOKEN, fail

PROGRESS_FROM = 8 * 1024 * 1024  # bytes: smaller transfers need no bar
NAME = re.compile(r"^[a-z][a-z0-9]{1,31}$")  # users, groups and spaces (the hub's own rule)


def split(url: str) -> tuple[str, str]:
    if not url.startswith("s3://"):
        fail(f"{url!r} is not an s3://bucket/key address")
    bucket, _, key = url[5:].partition("/")
    if not bucket:
        fail(f"{url!r} names no bucket")
    return bucket, key


def api(hub: str | None, token: str | None, method: str, path: str, **kw: Any) -> Any:
    """Call the hub's API as yourself; any refusal ends the command with its one-line reason."""
    from lakehub.client import LakeHubError, connect

    try:
        with connect(hub, token) as c:
            return c.request(method, path, **kw)
    except LakeHubError as err:
        fail(err.detail)


def client(hub: str | None, token: str | None) -> Any:
    import boto3
    from botocore.config import Config

    # one retry: a refusal (a full quota answers 500) is reported in seconds, not after five
    config = Config(retries={"max_attempts": 2, "mode": "standard"})
    if not (hub or token) and os.environ.get("AWS_ACCESS_KEY_ID"):
        return boto3.client("s3", config=config)
    from lakehub.client import LakeHubError, connect

    try:
        with connect(hub, token) as c:
            return boto3.client("s3", **c.lake.credentials().boto3_kwargs(), config=config)
    except LakeHubError as err:
        fail(err.detail)


REASONS = {
    "AccessDenied": "access denied",
    "403": "access denied",
    "NoSuchKey": "no such object",
    "404": "not found",
    "NoSuchBucket": "no such bucket",
    "BucketAlreadyExists": "bucket exists",
    "BucketAlreadyOwnedByYou": "bucket exists",
}


WRITE_REFUSALS = ("AccessDenied", "403", "InternalError", "500")  # a read-only bucket gives 500


def quota_refusal(bucket: str, size: int, hub: str | None, token: str | None) -> str | None:
    """Why a quota refused writing ``size`` bytes to ``bucket`` (the hub knows), else None."""
    from lakehub.client import LakeHubError, connect
    from lakehub.sizes import human

    try:
        with connect(hub, token) as c:
            quotas = c.request("GET", "/api/quotas")
    except LakeHubError:
        return None
    for q in quotas:
        mine = (
            bucket == f"space-{q['name']}"
            if q["kind"] == "space"
            else bucket.startswith(f"{q['name']}-")
        )
        if not mine:
            continue
        if q["blocked"]:
            return str(q["message"])
        # a multipart upload's parts count while it runs: its abort may have lifted the block
        if (q["max_bytes"] is not None and q["used_bytes"] + size > q["max_bytes"]) or (
            q["max_objects"] is not None and q["used_objects"] + 1 > q["max_objects"]
        ):
            return (
                f"quota exceeded for {q['kind']} {q['name']}: {q['usage']}, and this adds "
                f"{human(size)}; delete something or ask an admin"
            )
    return None


@contextmanager
def lake_errors(
    what: str, writing: tuple[str, int, str | None, str | None] | None = None
) -> Iterator[None]:
    """One-line errors; ``writing`` = (bucket, size, hub, token) when writing, for quotas."""
    from boto3.exceptions import S3UploadFailedError
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except (ClientError, S3UploadFailedError) as err:
        # uploads wrap the lake's answer in S3UploadFailedError
        inner = err if isinstance(err, ClientError) else err.__context__
        if not isinstance(inner, ClientError):
            fail(f"{what}: {err}")
        code = inner.response["Error"]["Code"]
        if writing and code in WRITE_REFUSALS:
            quota = quota_refusal(*writing)
            if quota:
                fail(quota)
        fail(f"{REASONS.get(code, code)}: {what}")
    except BotoCoreError as err:
        fail(f"{what}: {err}")


@click.group()
def lake() -> None:
    """Use the lake as yourself: list, copy, remove, make buckets, share your spaces."""


@lake.command("ls")
@click.argument("url", required=False)
@HUB
@TOKEN
def ls(url: str | None, hub: str | None, token: str | None) -> None:
    """List your buckets, or the objects and folders under s3://BUCKET/PREFIX."""
    s3 = client(hub, token)
    if not url:
        with lake_errors("listing buckets"):
            for b in s3.list_buckets()["Buckets"]:
                click.echo(b["Name"])
        return
    bucket, prefix = split(url)
    with lake_errors(url):
        pages = s3.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=prefix, Delimiter="/"
        )
        for page in pages:
            for p in page.get("CommonPrefixes", []):
                click.echo(f"{'DIR':>12}  s3://{bucket}/{p['Prefix']}")
            for o in page.get("Contents", []):
                click.echo(f"{o['Size']:>12}  s3://{bucket}/{o['Key']}")


@lake.command("cp")
@click.argument("src")
@click.argument("dst")
@click.option(
    "--max-bandwidth",
    default=None,
    help="Cap the transfer rate, e.g. 20MiB (per second; one part at a time)",
)
@HUB
@TOKEN
def cp(src: str, dst: str, max_bandwidth: str | None, hub: str | None, token: str | None) -> None:
    """Copy a file to or from the lake (one side is s3://...)."""
    from boto3.s3.transfer import TransferConfig

    from lakehub.sizes import parse_size

    if src.startswith("s3://") == dst.startswith("s3://"):
        fail("exactly one of SRC and DST must be an s3:// address")
    config = TransferConfig()
    if max_bandwidth:
        try:
            config = TransferConfig(max_bandwidth=parse_size(max_bandwidth), max_concurrency=1)
        except ValueError as err:
            fail(str(err))
    s3 = client(hub, token)
    if dst.startswith("s3://"):
        path = Path(src)
        if not path.is_file():
            fail(f"{src} is not a file")
        bucket, key = split(dst)
        if not key or key.endswith("/"):
            key += path.name
        size = path.stat().st_size
        with (
            lake_errors(f"s3://{bucket}/{key}", (bucket, size, hub, token)),
            _progress(size, src) as tick,
        ):  # a failed multipart upload is aborted by the transfer manager
            s3.upload_file(str(path), bucket, key, Callback=tick, Config=config)
        click.echo(f"uploaded {src} to s3://{bucket}/{key}")
    else:
        bucket, key = split(src)
        target = Path(dst)
        if target.is_dir():
            target = target / Path(key).name
        with lake_errors(src):
            size = s3.head_object(Bucket=bucket, Key=key)["ContentLength"]
            with _progress(size, src) as tick:
                s3.download_file(bucket, key, str(target), Callback=tick, Config=config)
        click.echo(f"downloaded {src} to {target}")


@contextmanager
def _progress(size: int, label: str) -> Iterator[Any]:
    if size < PROGRESS_FROM:
        yield lambda n: None
        return
    with click.progressbar(length=size, label=label, file=sys.stderr) as bar:
        yield bar.update


@lake.command("rm")
@click.argument("url")
@click.option("--recursive", is_flag=True, help="Everything under the prefix")
@click.option("--yes", is_flag=True, help="Do not ask before a recursive delete")
@HUB
@TOKEN
def rm(url: str, recursive: bool, yes: bool, hub: str | None, token: str | None) -> None:
    """Remove an object, or with --recursive everything under a prefix."""
    bucket, key = split(url)
    s3 = client(hub, token)
    with lake_errors(url):
        if not recursive:
            s3.head_object(Bucket=bucket, Key=key)  # a clear error for a missing object
            s3.delete_object(Bucket=bucket, Key=key)
            click.echo(f"removed {url}")
            return
        keys = [
            o["Key"]
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=key)
            for o in page.get("Contents", [])
        ]
        if keys and not yes:
            click.confirm(f"remove {len(keys)} objects under {url}?", abort=True, err=True)
        for start in range(0, len(keys), 1000):
            chunk = [{"Key": k} for k in keys[start : start + 1000]]
            s3.delete_objects(Bucket=bucket, Delete={"Objects": chunk})
        click.echo(f"removed {len(keys)} objects under {url}")


@lake.command("mb")
@click.argument("url")
@HUB
@TOKEN
def mb(url: str, hub: str | None, token: str | None) -> None:
    """Make a bucket (yours are named YOURNAME-...)."""
    bucket, _ = split(url)
    with lake_errors(url, (bucket, 0, hub, token)):
        client(hub, token).create_bucket(Bucket=bucket)
    click.echo(f"made s3://{bucket}")


def _space(name: str) -> str:
    if not NAME.match(name):
        fail(f"{name!r} is not a space name (2-32 lowercase letters and digits)")
    return name


def _grantee(who: str) -> dict[str, str]:
    """``alice`` is a user, ``@team`` a group."""
    kind, name = ("group", who[1:]) if who.startswith("@") else ("user", who)
    if not NAME.match(name):
        fail(f"{who!r} names no user (NAME) or group (@NAME)")
    return {kind: name}


@lake.command("share")
@click.argument("space")
@click.argument("grantee", metavar="USER|@GROUP")
@click.argument("access", metavar="read|write")
@HUB
@TOKEN
def share(space: str, grantee: str, access: str, hub: str | None, token: str | None) -> None:
    """Let a user, or a group (@NAME), read or write a space you own."""
    if access not in ("read", "write"):
        fail(f"access must be read or write, not {access!r}")
    body = {**_grantee(grantee), "access": access}
    api(hub, token, "PUT", f"/api/spaces/{_space(space)}/grants", json=body)
    click.echo(f"{grantee} may now {access} space {space} (s3://space-{space})")


@lake.command("unshare")
@click.argument("space")
@click.argument("grantee", metavar="USER|@GROUP")
@HUB
@TOKEN
def unshare(space: str, grantee: str, hub: str | None, token: str | None) -> None:
    """Take a user's, or a group's (@NAME), access to a space you own away."""
    api(hub, token, "DELETE", f"/api/spaces/{_space(space)}/grants", params=_grantee(grantee))
    click.echo(f"{grantee} no longer has access to space {space}")
