"""Artifact files in the lake, read and written with the caller's own keys.

The lake is the second judge of every access (the first is the area's own check): a file of an
experiment in ``space-team`` is written by a member with write access, with their keys, and a
space over its quota refuses it, as it would any other file. An administrator acting on another's
files, and the platform freeing what was deleted, use the lake's administrator.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from lakehub.server.identity.users import Directory, UserError
from lakehub.server.lake.base import s3_client
from lakehub.server.models.base import ArtifactStore, FileInfo, ModelsError, Reader

CHUNK = 1 << 20


def _refused(err: Exception, what: str) -> ModelsError:
    from botocore.exceptions import ClientError

    inner = err.__cause__ or err.__context__  # boto3's transfers wrap the S3 error
    if not isinstance(err, ClientError) and isinstance(inner, ClientError):
        err = inner
    if isinstance(err, ClientError):
        code = err.response.get("Error", {}).get("Code", "")
        if code in ("NoSuchKey", "404", "NotFound", "NoSuchBucket"):
            return ModelsError(f"{what} does not exist", "RESOURCE_DOES_NOT_EXIST")
        if code in ("AccessDenied", "403", "QuotaExceeded"):
            return ModelsError(
                f"the lake refused {what} (is its owner over quota?)", "PERMISSION_DENIED"
            )
        return ModelsError(f"the lake refused {what}: {code}", "TEMPORARILY_UNAVAILABLE")
    return ModelsError(f"the lake is not answering ({what})", "TEMPORARILY_UNAVAILABLE")


class LakeArtifacts(ArtifactStore):
    def __init__(self, directory: Directory) -> None:
        self.directory = directory
        self._clients: dict[str, tuple[str, Any]] = {}  # user -> (access key, client)

    def _client(self, who: Reader, bucket: str) -> Any:
        if who.admin and not bucket.startswith(f"{who.name}-"):
            return self.directory.lake.admin()
        try:
            creds = self.directory.credentials(who.name)
        except UserError as err:
            raise ModelsError(str(err), "PERMISSION_DENIED") from None
        have = self._clients.get(who.name)
        if have is None or have[0] != creds.access_key_id:
            client = s3_client(creds.endpoint_url, creds.access_key_id, creds.secret_access_key)
            self._clients[who.name] = have = (creds.access_key_id, client)
        return have[1]

    def _over_quota(self, bucket: str) -> str:
        """The quota-exceeded sentence if a quota keeps ``bucket`` read-only now, else ''."""
        from sqlalchemy import select

        from lakehub.server.db import Quota
        from lakehub.server.quotas import QuotaView, covers

        with self.directory.db.session() as s:
            for q in s.scalars(select(Quota).where(Quota.blocked.is_(True))):
                if covers(q.kind, q.name, bucket):
                    return QuotaView.of(q).message
        return ""

    def _write_refused(self, err: Exception, bucket: str, what: str) -> ModelsError:
        # a read-only (over-quota) bucket answers writes with 500 InternalError: say why
        message = self._over_quota(bucket)
        if message:
            return ModelsError(f"the lake refused {what}: {message}", "PERMISSION_DENIED")
        return _refused(err, what)

    def put(self, who: Reader, bucket: str, key: str, body: BinaryIO) -> None:
        try:
            self._client(who, bucket).upload_fileobj(body, bucket, key)
        except ModelsError:
            raise
        except Exception as err:
            raise self._write_refused(err, bucket, f"writing {key}") from None

    def get(self, who: Reader, bucket: str, key: str) -> Iterator[bytes]:
        try:
            body = self._client(who, bucket).get_object(Bucket=bucket, Key=key)["Body"]
        except ModelsError:
            raise
        except Exception as err:
            raise _refused(err, f"artifact {key}") from None
        return body.iter_chunks(CHUNK)  # type: ignore[no-any-return]

    def list(self, who: Reader, bucket: str, prefix: str) -> list[FileInfo]:
        out: list[FileInfo] = []
        try:
            pages = self._client(who, bucket).get_paginator("list_objects_v2")
            for page in pages.paginate(Bucket=bucket, Prefix=prefix, Delimiter="/"):
                for p in page.get("CommonPrefixes", []):
                    out.append(FileInfo(p["Prefix"][len(prefix) :].rstrip("/"), True))
                for o in page.get("Contents", []):
                    name = o["Key"][len(prefix) :]
                    if name:
                        out.append(FileInfo(name, False, int(o["Size"])))
        except ModelsError:
            raise
        except Exception as err:
            raise _refused(err, f"listing {prefix}") from None
        return out

    def copy_tree(self, who: Reader, src: tuple[str, str], dst: tuple[str, str]) -> int:
        client = self._client(who, src[0])
        writer = self._client(who, dst[0])
        total = 0
        try:
            for page in client.get_paginator("list_objects_v2").paginate(
                Bucket=src[0], Prefix=src[1]
            ):
                for o in page.get("Contents", []):
                    rel = o["Key"][len(src[1]) :]
                    writer.copy_object(
                        Bucket=dst[0],
                        Key=dst[1] + rel,
                        CopySource={"Bucket": src[0], "Key": o["Key"]},
                    )
                    total += int(o["Size"])
        except Exception as err:
            raise self._write_refused(err, dst[0], f"copying {src[1]}") from None
        if not total:
            raise ModelsError(f"nothing to register under {src[1]}", "RESOURCE_DOES_NOT_EXIST")
        return total

    def download_tree(self, who: Reader, bucket: str, prefix: str, dest: Path) -> int:
        client = self._client(who, bucket)
        total = 0
        try:
            for page in client.get_paginator("list_objects_v2").paginate(
                Bucket=bucket, Prefix=prefix
            ):
                for o in page.get("Contents", []):
                    rel = o["Key"][len(prefix) :]
                    target = (dest / rel).resolve()
                    if not rel or not target.is_relative_to(dest.resolve()):
                        continue  # a key such as "../x" never leaves the folder
                    target.parent.mkdir(parents=True, exist_ok=True)
                    client.download_file(bucket, o["Key"], str(target))
                    total += int(o["Size"])
        except Exception as err:
            raise _refused(err, f"files under {prefix}") from None
        if not total:
            raise ModelsError(f"no files under {prefix}", "RESOURCE_DOES_NOT_EXIST")
        return total

    def _each(self, bucket: str, prefix: str) -> Iterator[dict[str, Any]]:
        from botocore.exceptions import ClientError

        try:
            for page in (
                self.directory.lake.admin()
                .get_paginator("list_objects_v2")
                .paginate(Bucket=bucket, Prefix=prefix)
            ):
                yield from page.get("Contents", [])
        except ClientError as err:
            if err.response["Error"]["Code"] not in ("NoSuchBucket", "404"):
                raise

    def delete_tree(self, bucket: str, prefix: str) -> int:
        admin = self.directory.lake.admin()
        found = list(self._each(bucket, prefix))
        if not prefix.endswith("/"):  # the file so named, or the folder: not "model.pkl2"
            found = [o for o in found if o["Key"] == prefix or o["Key"].startswith(prefix + "/")]
        for i in range(0, len(found), 1000):
            chunk = found[i : i + 1000]
            admin.delete_objects(
                Bucket=bucket, Delete={"Objects": [{"Key": o["Key"]} for o in chunk], "Quiet": True}
            )
        return sum(int(o["Size"]) for o in found)

    def size(self, bucket: str, prefix: str) -> int:
        return sum(int(o["Size"]) for o in self._each(bucket, prefix))
