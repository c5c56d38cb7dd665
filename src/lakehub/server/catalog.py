"""The dataset catalog: named lake paths with inferred schema, partitions and size.

Inference reads with the *registering user's* keys and previews with the *viewer's*, so the lake
stays the judge of who reads what. A dataset is visible to whoever can read its bucket (admins
see every entry); it is changed by whoever can write there. Registration infers first and writes
the entry in one transaction afterwards: a failure leaves nothing behind.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from lakehub import tables
from lakehub.server import refs
from lakehub.server.db import Dataset, User, utcnow
from lakehub.server.identity.users import Directory, UserError, shared_access
from lakehub.server.schema import Instant

NAME_RE = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
TAG_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,31}$")
MAX_TAGS = 20
COUNT_TEXT_ROWS_UP_TO = 256 * 1024 * 1024  # CSV/JSON rows are counted by reading: only if small
PREVIEW_MAX = 100


@dataclass
class Inferred:
    schema: list[dict[str, str]] = field(default_factory=list)
    partitioning: list[str] = field(default_factory=list)
    partitions: dict[str, list[str]] = field(default_factory=dict)
    row_count: int | None = None
    size_bytes: int = 0
    file_count: int = 0
    one_file: bool = False  # the path named a file, not a folder


class DatasetView(BaseModel):
    """A catalog entry as one viewer sees it."""

    model_config = ConfigDict(serialize_by_alias=True)  # schema_ is "schema" in answers

    name: str
    ref: str = Field(description="owner/name: how to name it whoever else has one so called")
    path: str  # s3://bucket/prefix/ (a folder) or s3://bucket/key (one file)
    bucket: str
    prefix: str
    format: str
    partitioning: list[str]
    description: str
    tags: list[str]
    lineage: str
    owner: str | None
    schema_: list[dict[str, str]] = Field(alias="schema")
    partitions: dict[str, list[str]]
    row_count: int | None
    size_bytes: int
    file_count: int
    created_at: Instant
    updated_at: Instant
    access: str  # read | write (admin for an administrator's view of another's)


def infer(fs: Any, bucket: str, prefix: str, fmt: str, partitioning: list[str] | None) -> Inferred:
    """Look at the files under a path: schema, partitions, rows (from Parquet footers), size."""
    base = f"{bucket}/{prefix}".rstrip("/")
    files, meta = tables.listing(fs, bucket, prefix)
    if not files:
        raise tables.TableError(f"nothing found under s3://{base}/ (or no access to it)")
    out = Inferred(size_bytes=sum(f.size or 0 for f in files), file_count=len(files))
    out.one_file = len(files) == 1 and files[0].path == base
    if fmt == "raw":
        return out
    if fmt == "zarr":
        return _infer_zarr(fs, base, files, out)
    keys = partitioning if partitioning is not None else tables.hive_keys(files, base)
    out.partitioning = keys
    out.partitions = tables.partition_values(files, base, keys)
    stored = tables.stored_schema(fs, meta) if fmt == "parquet" else None
    data = tables.open_dataset(fs, bucket, prefix, fmt, keys, files, stored)
    out.schema = [{"name": f.name, "type": str(f.type)} for f in data.schema]
    if fmt == "parquet" or out.size_bytes <= COUNT_TEXT_ROWS_UP_TO:
        try:
            out.row_count = int(data.count_rows())  # Parquet: footers only, every file checked
        except Exception as err:
            raise tables.TableError(
                f"cannot read s3://{base}/ as {fmt}: {str(err).splitlines()[0][:300]}"
            ) from None
    return out


def _infer_zarr(fs: Any, base: str, files: list[Any], out: Inferred) -> Inferred:
    def meta(path: str) -> dict[str, Any] | None:
        try:
            with fs.open_input_stream(path) as f:
                doc: dict[str, Any] = json.loads(f.read())
                return doc
        except (OSError, ValueError):
            return None

    root = meta(f"{base}/zarr.json")
    if root is None:
        raise tables.TableError(f"s3://{base}/ has no zarr.json: not a Zarr v3 store")
    arrays = {"": root} if root.get("node_type") == "array" else {}
    if root.get("node_type") == "group":
        for sub in {f.path[len(base) + 1 :].split("/")[0] for f in files}:
            doc = meta(f"{base}/{sub}/zarr.json")
            if doc and doc.get("node_type") == "array":
                arrays[sub] = doc
    for name, doc in sorted(arrays.items()):
        shape = doc.get("shape", [])
        out.schema.append({"name": name or "(root)", "type": f"{doc.get('data_type')}{shape}"})
        if name == "" and shape:
            out.row_count = int(shape[0])
    return out


def _tags(tags: list[str]) -> str:
    clean = sorted({t.strip().lower() for t in tags if t.strip()})
    bad = [t for t in clean if not TAG_RE.match(t)]
    if bad:
        raise UserError(f"invalid tag {bad[0]!r}: use up to 32 lowercase letters, digits, . _ -")
    if len(clean) > MAX_TAGS:
        raise UserError(f"too many tags: at most {MAX_TAGS}")
    return "," + ",".join(clean) + "," if clean else ""


class Catalog:
    def __init__(self, directory: Directory) -> None:
        self.directory = directory
        self.db = directory.db

    # who may do what ---------------------------------------------------------------------
    @staticmethod
    def _access(bucket: str, viewer: str, shared: dict[str, str]) -> str | None:
        """``viewer``'s access to ``bucket``; ``shared`` is their entry of ``shared_access``."""
        if bucket.startswith(f"{viewer}-"):
            return "write"
        return shared.get(bucket)

    def _fs_for(self, name: str) -> Any:
        c = self.directory.credentials(name)
        return tables.s3_filesystem(c.endpoint_url, c.access_key_id, c.secret_access_key)

    def _row(self, s: Session, ref: str, viewer: str, admin: bool, write: bool = False) -> Dataset:
        """The dataset ``ref`` (``name`` or ``owner/name``, see :mod:`lakehub.server.refs`)
        means for ``viewer``, who must be able to read it (and write it, for ``write``)."""
        shared = shared_access(s).get(viewer, {})
        named = s.execute(
            select(Dataset, User.name)
            .outerjoin(User, Dataset.owner_id == User.id)
            .where(Dataset.name == refs.split(ref)[1])
        ).all()
        visible = [
            (r, o) for r, o in named if admin or self._access(r.bucket, viewer, shared) is not None
        ]
        row = refs.pick(visible, ref, viewer, "dataset")
        if write and self._access(row.bucket, viewer, shared) != "write" and not admin:
            raise UserError(f"you may read dataset {ref!r} but not change it", 403)
        return row

    def _view(self, s: Session, row: Dataset, access: str | None, admin: bool) -> DatasetView:
        owner = s.get(User, row.owner_id).name if row.owner_id else None  # type: ignore[union-attr]
        return DatasetView(
            name=row.name,
            ref=refs.ref(owner, row.name),
            path=f"s3://{row.bucket}/{row.prefix}".rstrip("/") + ("" if row.one_file else "/"),
            bucket=row.bucket,
            prefix=row.prefix,
            format=row.format,
            partitioning=[p for p in row.partitioning.split(",") if p],
            description=row.description,
            tags=[t for t in row.tags.split(",") if t],
            lineage=row.lineage,
            owner=owner,
            schema=json.loads(row.schema_json),
            partitions=json.loads(row.partitions_json),
            row_count=row.row_count,
            size_bytes=row.size_bytes,
            file_count=row.file_count,
            created_at=row.created_at,
            updated_at=row.updated_at,
            access=access or ("admin" if admin else "read"),
        )

    # operations ----------------------------------------------------------------------------
    def register(
        self,
        name: str,
        path: str,
        fmt: str,
        actor: str,
        *,
        partitioning: list[str] | None = None,
        description: str = "",
        tags: list[str] | None = None,
        lineage: str = "",
    ) -> DatasetView:
        if not NAME_RE.match(name):
            raise UserError(
                f"invalid dataset name {name!r}: lowercase letters, digits, _ and -, "
                "starting with a letter, at most 63"
            )
        refs.check_free(name, "dataset")
        try:
            bucket, prefix = tables.split_path(path)
            tables.check_format(fmt)
        except tables.TableError as err:
            raise UserError(str(err)) from None
        for key in partitioning or []:
            if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", key):
                raise UserError(f"invalid partition key {key!r}")
        tag_text = _tags(tags or [])
        with self.db.session() as s:
            mine = Dataset.owner_id == select(User.id).where(User.name == actor).scalar_subquery()
            if s.scalar(select(Dataset.id).where(Dataset.name == name, mine)):
                raise UserError(f"you already have a dataset {name!r}", 409)
            if self._access(bucket, actor, shared_access(s).get(actor, {})) != "write":
                raise UserError(
                    f"you cannot publish into bucket {bucket!r}: register datasets "
                    "in your own buckets or in spaces you may write",
                    403,
                )
        found = self._infer(actor, bucket, prefix, fmt, partitioning)
        try:
            with self.db.session() as s:
                owner = self.directory.get(s, actor)
                s.add(
                    Dataset(
                        name=name,
                        bucket=bucket,
                        prefix=prefix,
                        format=fmt,
                        partitioning=",".join(found.partitioning),
                        description=description,
                        tags=tag_text,
                        lineage=lineage,
                        owner_id=owner.id,
                        **self._columns(found),
                    )
                )
                self.directory.record_event(
                    s, actor, "dataset.register", refs.ref(actor, name), f"s3://{bucket}/{prefix}"
                )
        except IntegrityError:
            raise UserError(f"you already have a dataset {name!r}", 409) from None
        return self.get(refs.ref(actor, name), actor, False)

    def _infer(
        self, actor: str, bucket: str, prefix: str, fmt: str, partitioning: list[str] | None
    ) -> Inferred:
        try:
            return infer(self._fs_for(actor), bucket, prefix, fmt, partitioning)
        except tables.TableError as err:
            status = 403 if str(err).startswith("access denied") else 400
            raise UserError(str(err), status) from None

    @staticmethod
    def _columns(found: Inferred) -> dict[str, Any]:
        return {
            "schema_json": json.dumps(found.schema),
            "partitions_json": json.dumps(found.partitions),
            "row_count": found.row_count,
            "size_bytes": found.size_bytes,
            "file_count": found.file_count,
            "one_file": found.one_file,
        }

    def refresh(self, name: str, actor: str, admin: bool) -> DatasetView:
        """Infer again (new files, new partitions), with the actor's keys."""
        with self.db.session() as s:
            row = self._row(s, name, actor, admin, write=True)
            args = (
                row.bucket,
                row.prefix,
                row.format,
                [p for p in row.partitioning.split(",") if p],
            )
        found = self._infer(actor, *args)
        with self.db.session() as s:
            row = self._row(s, name, actor, admin, write=True)
            for k, v in self._columns(found).items():
                setattr(row, k, v)
            row.updated_at = utcnow()
            self.directory.record_event(s, actor, "dataset.refresh", _ref(s, row))
        return self.get(name, actor, admin)

    def update(
        self,
        name: str,
        actor: str,
        admin: bool,
        *,
        description: str | None = None,
        tags: list[str] | None = None,
        lineage: str | None = None,
    ) -> DatasetView:
        with self.db.session() as s:
            row = self._row(s, name, actor, admin, write=True)
            if description is not None:
                row.description = description
            if tags is not None:
                row.tags = _tags(tags)
            if lineage is not None:
                row.lineage = lineage
            row.updated_at = utcnow()
            self.directory.record_event(s, actor, "dataset.update", _ref(s, row))
        return self.get(name, actor, admin)

    def delete(self, name: str, actor: str, admin: bool) -> None:
        """Forget the entry; the data stays where it is."""
        with self.db.session() as s:
            row = self._row(s, name, actor, admin, write=True)
            self.directory.record_event(s, actor, "dataset.delete", _ref(s, row))
            s.delete(row)

    def get(self, name: str, viewer: str, admin: bool) -> DatasetView:
        with self.db.session() as s:
            row = self._row(s, name, viewer, admin)
            access = self._access(row.bucket, viewer, shared_access(s).get(viewer, {}))
            return self._view(s, row, access, admin)

    def search(
        self, viewer: str, admin: bool, q: str = "", tag: str = "", column: str = ""
    ) -> list[DatasetView]:
        """Visible datasets whose name, description, tags or columns match ``q``."""
        q, tag, column = q.strip().lower(), tag.strip().lower(), column.strip().lower()
        with self.db.session() as s:
            shared = shared_access(s).get(viewer, {})
            rows = s.scalars(select(Dataset).order_by(Dataset.name)).all()
            out = []
            for row in rows:
                access = self._access(row.bucket, viewer, shared)
                if access is None and not admin:
                    continue
                columns = [c["name"].lower() for c in json.loads(row.schema_json)]
                columns += row.partitioning.lower().split(",")
                if tag and f",{tag}," not in row.tags:
                    continue
                if column and column not in columns:
                    continue
                hay = " ".join((row.name, row.description.lower(), row.tags, *columns))
                if q and not all(word in hay for word in q.split()):
                    continue
                out.append(self._view(s, row, access, admin))
            return out

    def preview(self, name: str, viewer: str, admin: bool, limit: int = 20) -> dict[str, Any]:
        """The first rows, read with the viewer's own keys (so the lake decides)."""
        view = self.get(name, viewer, admin)
        if view.format not in tables.TABULAR:
            return {"columns": [], "rows": [], "note": f"no row preview for {view.format} data"}
        limit = max(1, min(limit, PREVIEW_MAX))
        try:
            data = tables.open_dataset(
                self._fs_for(viewer), view.bucket, view.prefix, view.format, view.partitioning
            )
            head = tables.head(data, limit)
        except tables.TableError as err:
            raise UserError(
                str(err), 403 if str(err).startswith("access denied") else 400
            ) from None
        except OSError as err:
            raise UserError(
                tables.s3_reason(err, view.path), 403 if "ACCESS" in str(err) else 400
            ) from None
        rows = [[_plain(v) for v in r.values()] for r in head.to_pylist()]
        return {"columns": head.schema.names, "rows": rows, "note": ""}


def _ref(s: Session, row: Dataset) -> str:
    owner = s.get(User, row.owner_id) if row.owner_id else None
    return refs.ref(owner.name if owner else None, row.name)


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)
