"""Uploads from the portal in parts (S3 multipart), always with the *user's own* keys.

Each part passes through the control plane on its way to the lake: the browser needs to reach
only the front door, the user's secret never reaches the page, and any S3 lake works, whether
or not it accepts cross-origin requests. The lake decides who may write where.

Rules: a key is a relative path of non-empty parts, none of them ``.`` or ``..``, no control
characters, at most 1024 bytes; an existing object is replaced only when asked; parts are at
most :data:`MAX_PART` bytes and at most :data:`MAX_PARTS` of them.
"""

from __future__ import annotations

import math
from typing import Any

MIB = 1024 * 1024
PART = 8 * MIB  # the usual part size
MAX_PART = 64 * MIB  # what one request may carry
MAX_PARTS = 10_000  # the S3 limit
MAX_KEY_BYTES = 1024


class UploadError(ValueError):
    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def check_key(key: str) -> str:
    """``key`` if it is a sensible object name, else an :class:`UploadError` saying why."""
    if not key.strip():
        raise UploadError("the object needs a name")
    if key.startswith("/"):
        raise UploadError(f"{key!r}: a name may not start with '/'")
    if any(ord(c) < 32 or c == "\x7f" for c in key):
        raise UploadError(f"{key!r}: a name may not contain control characters")
    parts = key.split("/")
    if any(p in (".", "..") for p in parts):
        raise UploadError(f"{key!r}: '.' and '..' are not allowed in a name")
    if not parts[-1]:
        raise UploadError(f"{key!r}: the file needs a name after the last '/'")
    if "" in parts:
        raise UploadError(f"{key!r}: a name may not contain '//'")
    if len(key.encode()) > MAX_KEY_BYTES:
        raise UploadError(f"a name may be at most {MAX_KEY_BYTES} bytes long")
    return key


def part_size(size: int) -> int:
    """The part size for a file of ``size`` bytes: 8 MiB, more (whole MiB) for huge files."""
    if size < 0:
        raise UploadError("the size cannot be negative")
    needed = max(PART, math.ceil(size / MAX_PARTS / MIB) * MIB)
    if needed > MAX_PART:
        raise UploadError(
            f"files above {MAX_PART * MAX_PARTS // 1024**3} GiB cannot be uploaded "
            "here: use 'lakehub lake cp'",
            413,
        )
    return needed


def start(s3: Any, bucket: str, key: str, content_type: str = "", overwrite: bool = False) -> str:
    """Begin a multipart upload; its id. Refuses to replace an object unless ``overwrite``."""
    from botocore.exceptions import ClientError

    check_key(key)
    if not overwrite:
        try:
            s3.head_object(Bucket=bucket, Key=key)
        except ClientError as err:
            if err.response["Error"]["Code"] not in ("404", "NoSuchKey", "NotFound"):
                raise
        else:
            raise UploadError(f"{key} already exists", 409)
    extra = {"ContentType": content_type} if content_type else {}
    upload_id: str = s3.create_multipart_upload(Bucket=bucket, Key=key, **extra)["UploadId"]
    return upload_id


def put_part(s3: Any, bucket: str, key: str, upload_id: str, number: int, data: bytes) -> str:
    """Store part ``number`` (1-based); its ETag, which :func:`complete` needs."""
    check_key(key)
    if not 1 <= number <= MAX_PARTS:
        raise UploadError(f"part numbers run from 1 to {MAX_PARTS}")
    etag: str = s3.upload_part(
        Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=data
    )["ETag"]
    return etag


def complete(s3: Any, bucket: str, key: str, upload_id: str, parts: list[tuple[int, str]]) -> int:
    """Join the parts into the object; its size."""
    check_key(key)
    if not parts:
        raise UploadError("an upload needs at least one part")
    numbers = [n for n, _ in parts]
    if numbers != list(range(1, len(parts) + 1)):
        raise UploadError("parts must be numbered 1, 2, 3 ... without gaps")
    s3.complete_multipart_upload(
        Bucket=bucket,
        Key=key,
        UploadId=upload_id,
        MultipartUpload={"Parts": [{"PartNumber": n, "ETag": e} for n, e in parts]},
    )
    size: int = s3.head_object(Bucket=bucket, Key=key)["ContentLength"]
    return size


def abort(s3: Any, bucket: str, key: str, upload_id: str) -> None:
    """Drop the upload and the parts stored so far."""
    check_key(key)
    s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
