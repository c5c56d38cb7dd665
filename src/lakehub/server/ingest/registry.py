"""Sources and streams: who may push data, and where each tag lands (metadata in the database).

A source belongs to a user. Its token (HTTP) is shown once and stored as a SHA-256 hash; its
Forward shared key is stored encrypted with the hub's vault. A stream belongs to a user and
lives in a bucket its owner may write (their own, or a space granted ``write``); whoever may
read that bucket may read the stream, so grants work as for the rest of the lake. A source
routes only into streams its owner may write.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import threading
from pathlib import Path

from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from lakehub.server import refs
from lakehub.server.db import Dataset, IngestError, IngestSource, IngestStream, User
from lakehub.server.identity.users import Directory, UserError, home_bucket, shared_access
from lakehub.server.ingest.base import DEFAULT_MAX_MESSAGE, Source, Stream
from lakehub.server.ingest.tags import overlap
from lakehub.server.schema import Instant

NAME_RE = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
TAG_RE = re.compile(r"^[A-Za-z0-9_.*?\[\]!-]{1,200}$")
KINDS = ("records", "raw")


BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")
CHANGED = "registry.changed"


def mark_changed(ingest_dir: Path) -> None:
    """Tell the receivers that sources, streams, users or grants changed: they read the
    registry again before they take the next message (see :meth:`Intake.fresh`). Atomic, with
    a new value each time, so no change is ever missed."""
    ingest_dir.mkdir(parents=True, exist_ok=True)
    tmp = ingest_dir / f".{CHANGED}.{os.getpid()}.{threading.get_ident()}"
    tmp.write_bytes(os.urandom(16))
    os.replace(tmp, ingest_dir / CHANGED)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _check_name(name: str, kind: str) -> None:
    if not NAME_RE.match(name):
        raise UserError(
            f"invalid {kind} name {name!r}: lowercase letters, digits, _ and -, "
            "starting with a letter, at most 63"
        )
    refs.check_free(name, kind)


def _check_tags(tags: list[str]) -> str:
    if not tags:
        raise UserError("give at least one tag pattern (e.g. 'app.*')")
    for t in tags:
        if not TAG_RE.match(t):
            raise UserError(f"invalid tag pattern {t!r}: letters, digits, . _ - and globs")
    return json.dumps(tags)


def _check_path(path: str | None, owner: str, name: str) -> tuple[str, str]:
    """(bucket, prefix) of a stream's path, refused unless every object under it can be
    written: a valid bucket name, a prefix of plain segments (no ``.``/``..``, no control
    characters, no backslash), at most 512 bytes."""
    where = path if path is not None else f"s3://{home_bucket(owner)}/streams/{name}"
    if not where.startswith("s3://"):
        raise UserError(f"path must be s3://bucket/prefix, not {path!r}")
    bucket, _, prefix = where[5:].partition("/")
    if not BUCKET_RE.match(bucket):
        raise UserError(
            f"invalid bucket {bucket!r} in path: 3 to 63 lowercase letters, digits "
            "and -, starting and ending with a letter or digit"
        )
    prefix = prefix.strip("/")
    segments = prefix.split("/") if prefix else []
    bad = [
        seg
        for seg in segments
        if seg in ("", ".", "..") or any(ord(ch) < 32 or ord(ch) == 127 or ch == "\\" for ch in seg)
    ]
    if bad or len(prefix.encode("utf-8", "replace")) > 512:
        raise UserError(
            f"invalid prefix in path {path!r}: plain segments separated by '/', no "
            "'.' or '..', no control characters or backslashes, at most 512 bytes"
        )
    try:
        prefix.encode("utf-8")
    except UnicodeEncodeError:
        raise UserError("the path must be valid Unicode") from None
    return bucket, prefix


def _whose(owner: str, actor: str) -> str:
    return "you already have" if owner == actor else f"{owner} already has"


def can_write(s: Session, user: str, bucket: str) -> bool:
    return bucket.startswith(f"{user}-") or shared_access(s).get(user, {}).get(bucket) == "write"


def can_read(s: Session, user: str, bucket: str) -> bool:
    return bucket.startswith(f"{user}-") or bucket in shared_access(s).get(user, {})


class SourceView(BaseModel):
    name: str
    owner: str
    ref: str = Field(description="owner/name")
    tags: list[str]
    shared_key: bool
    max_bytes_per_s: int | None
    max_message_bytes: int
    created_at: Instant


class NewSourceView(SourceView):
    """A source as its creation answers it: with its secrets, shown this once."""

    token: str = Field(description="for HTTP: shown once", repr=False)
    key: str | None = Field(description="the Forward shared key: shown once", repr=False)


class StreamError(BaseModel):
    at: Instant
    count: int = Field(description="how many errors it stands for (a receiver reports in bursts)")
    message: str


class StreamView(BaseModel):
    name: str
    owner: str
    ref: str = Field(description="owner/name: how to name it whoever else has one so called")
    kind: str
    path: str
    tags: list[str]
    dataset: str | None = Field(description="its catalog entry (owner/name), records only")
    received_bytes: int
    received_entries: int
    last_event_at: float | None
    rate_bytes: float
    rate_entries: float
    moved_records: int
    moved_bytes: int
    moved_until: float | None
    lag_seconds: float  # between the newest event received and the newest one in the lake
    errors: int
    last_error: str
    recent_errors: list[StreamError] = Field(
        default=[], description="newest first; in a single stream's answer only"
    )
    created_at: Instant
    access: str


class Registry:
    def __init__(self, directory: Directory) -> None:
        self.directory = directory
        self.db = directory.db

    # sources -------------------------------------------------------------------------------
    def create_source(
        self,
        name: str,
        owner: str,
        tags: list[str],
        actor: str,
        *,
        shared_key: bool = True,
        max_bytes_per_s: int | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE,
    ) -> NewSourceView:
        """The source with its token and shared key: shown once."""
        _check_name(name, "source")
        tag_text = _check_tags(tags)
        if max_message_bytes < 1024 or (max_bytes_per_s is not None and max_bytes_per_s < 1024):
            raise UserError("limits must be at least 1024 bytes")
        token = "lhs_" + secrets.token_urlsafe(30)
        key = secrets.token_urlsafe(24) if shared_key else None
        with self.db.session() as s:
            user = self.directory.get(s, owner)
            mine = IngestSource.owner_id == user.id
            if s.scalar(select(IngestSource.id).where(IngestSource.name == name, mine)):
                raise UserError(f"{_whose(owner, actor)} a source {name!r}", 409)
            if not shared_key:  # keyless traffic is claimed by its tags: one claimant each
                self._check_unclaimed(s, user.id, tags)
            s.add(
                IngestSource(
                    name=name,
                    owner_id=user.id,
                    tags=tag_text,
                    token_hash=token_hash(token),
                    shared_key_enc=self.directory.vault.encrypt(key) if key else None,
                    max_bytes_per_s=max_bytes_per_s,
                    max_message_bytes=max_message_bytes,
                )
            )
            self.directory.record_event(s, actor, "source.create", refs.ref(owner, name))
        view = self.source(refs.ref(owner, name), owner, False)
        return NewSourceView(token=token, key=key, **view.model_dump())

    @staticmethod
    def _check_unclaimed(s: Session, owner_id: int, tags: list[str]) -> None:
        """A source without a shared key takes any connection sending its tags, so no tag may
        be taken by keyless sources of two users: the second claim is refused."""
        others = s.scalars(
            select(IngestSource).where(
                IngestSource.shared_key_enc.is_(None), IngestSource.owner_id != owner_id
            )
        )
        for other in others:
            for theirs in json.loads(other.tags):
                for mine in tags:
                    if overlap(mine, theirs):
                        raise UserError(
                            f"tag pattern {mine!r} overlaps {theirs!r}, taken by another "
                            "user's source without a shared key: use a shared key, or "
                            "patterns no one else claims",
                            409,
                        )

    def _source_row(self, s: Session, ref: str, viewer: str, admin: bool) -> IngestSource:
        """A source is its owner's alone (and administrators')."""
        named = s.execute(
            select(IngestSource, User.name)
            .join(User, IngestSource.owner_id == User.id)
            .where(IngestSource.name == refs.split(ref)[1])
        ).all()
        return refs.pick([(r, o) for r, o in named if admin or o == viewer], ref, viewer, "source")

    def source(self, name: str, viewer: str, admin: bool) -> SourceView:
        with self.db.session() as s:
            return self._source_view(s, self._source_row(s, name, viewer, admin))

    @staticmethod
    def _source_view(s: Session, row: IngestSource) -> SourceView:
        owner = s.get(User, row.owner_id)
        return SourceView(
            name=row.name,
            owner=owner.name if owner else "?",
            ref=refs.ref(owner.name if owner else None, row.name),
            tags=json.loads(row.tags),
            shared_key=row.shared_key_enc is not None,
            max_bytes_per_s=row.max_bytes_per_s,
            max_message_bytes=row.max_message_bytes,
            created_at=row.created_at,
        )

    def sources(self, viewer: str, admin: bool) -> list[SourceView]:
        with self.db.session() as s:
            rows = s.scalars(select(IngestSource).order_by(IngestSource.name)).all()
            views = [self._source_view(s, r) for r in rows]
        return [v for v in views if admin or v.owner == viewer]

    def delete_source(self, name: str, actor: str, admin: bool) -> None:
        with self.db.session() as s:
            row = self._source_row(s, name, actor, admin)
            self.directory.record_event(s, actor, "source.delete", self._source_view(s, row).ref)
            s.delete(row)

    # streams -------------------------------------------------------------------------------
    def create_stream(
        self,
        name: str,
        owner: str,
        kind: str,
        tags: list[str],
        actor: str,
        *,
        path: str | None = None,
        position: int = 100,
    ) -> StreamView:
        _check_name(name, "stream")
        tag_text = _check_tags(tags)
        if kind not in KINDS:
            raise UserError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
        bucket, prefix = _check_path(path, owner, name)
        with self.db.session() as s:
            user = self.directory.get(s, owner)
            for table, what in ((IngestStream, "stream"), (Dataset, "dataset")):
                if kind == "raw" and table is Dataset:
                    continue
                if s.scalar(select(table.id).where(table.name == name, table.owner_id == user.id)):
                    raise UserError(f"{_whose(owner, actor)} a {what} {name!r}", 409)
            if not can_write(s, owner, bucket):
                raise UserError(
                    f"{owner} cannot write bucket {bucket!r}: streams live in your "
                    "own buckets or in spaces you may write",
                    403,
                )
            s.add(
                IngestStream(
                    name=name,
                    owner_id=user.id,
                    kind=kind,
                    bucket=bucket,
                    prefix=prefix,
                    tags=tag_text,
                    position=position,
                    dataset=name if kind == "records" else None,
                )
            )
            if kind == "records":  # catalogued at once; counts follow as data arrives
                s.add(
                    Dataset(
                        name=name,
                        bucket=bucket,
                        prefix=prefix,
                        format="parquet",
                        partitioning="year,month,day",
                        owner_id=user.id,
                        row_count=0,
                        description=f"records of stream {name} (tags {', '.join(tags)})",
                        lineage=f"ingested: stream {name}",
                    )
                )
            self.directory.record_event(
                s, actor, "stream.create", refs.ref(owner, name), f"s3://{bucket}/{prefix}"
            )
        return self.stream(refs.ref(owner, name), owner, False)

    def _stream_row(
        self, s: Session, ref: str, viewer: str, admin: bool, write: bool = False
    ) -> tuple[IngestStream, str]:
        """The stream ``ref`` means for ``viewer`` (see :mod:`lakehub.server.refs`), and their
        access to it: its owner and whoever may write its bucket change it, readers see it."""

        def access(row: IngestStream, owner: str) -> str:
            if owner == viewer or can_write(s, viewer, row.bucket):
                return "write"
            return "read" if can_read(s, viewer, row.bucket) else ""

        named = s.execute(
            select(IngestStream, User.name)
            .join(User, IngestStream.owner_id == User.id)
            .where(IngestStream.name == refs.split(ref)[1])
        ).all()
        visible = [(r, o) for r, o in named if admin or access(r, o)]
        row = refs.pick(visible, ref, viewer, "stream")
        got = access(row, dict((r.id, o) for r, o in visible)[row.id])
        if write and got != "write" and not admin:
            raise UserError(f"you may read stream {ref!r} but not change it", 403)
        return row, got or "admin"

    def stream(self, name: str, viewer: str, admin: bool) -> StreamView:
        with self.db.session() as s:
            row, access = self._stream_row(s, name, viewer, admin)
            view = self._stream_view(s, row, access)
            recent = s.scalars(
                select(IngestError)
                .where(IngestError.stream_id == row.id)
                .order_by(IngestError.id.desc())
            )
            view.recent_errors = [
                StreamError(at=e.at, count=e.count, message=e.message) for e in recent
            ]
            return view

    @staticmethod
    def _stream_view(s: Session, row: IngestStream, access: str) -> StreamView:
        owner = s.get(User, row.owner_id)
        newest = row.last_event_at
        return StreamView(
            name=row.name,
            owner=owner.name if owner else "?",
            ref=refs.ref(owner.name if owner else None, row.name),
            kind=row.kind,
            path=f"s3://{row.bucket}/{row.prefix}/",
            tags=json.loads(row.tags),
            dataset=refs.ref(owner.name if owner else None, row.dataset) if row.dataset else None,
            received_bytes=row.received_bytes,
            received_entries=row.received_entries,
            last_event_at=newest,
            rate_bytes=row.rate_bytes,
            rate_entries=row.rate_entries,
            moved_records=row.moved_records,
            moved_bytes=row.moved_bytes,
            moved_until=row.moved_until,
            lag_seconds=0.0 if newest is None else max(0.0, newest - (row.moved_until or newest)),
            errors=row.errors,
            last_error=row.last_error,
            created_at=row.created_at,
            access=access,
        )

    def streams(self, viewer: str, admin: bool) -> list[StreamView]:
        out = []
        with self.db.session() as s:
            for row in s.scalars(select(IngestStream).order_by(IngestStream.name)).all():
                owner = s.get(User, row.owner_id)
                try:
                    ref = refs.ref(owner.name if owner else None, row.name)
                    out.append(self._stream_view(s, *self._stream_row(s, ref, viewer, admin)))
                except UserError:
                    continue
        return out

    def delete_stream(self, name: str, actor: str, admin: bool) -> None:
        """Stop routing into it; what reached the lake stays (and its dataset entry too)."""
        with self.db.session() as s:
            row, _ = self._stream_row(s, name, actor, admin, write=True)
            self.directory.record_event(
                s, actor, "stream.delete", self._stream_view(s, row, "").ref
            )
            s.delete(row)


def load(directory: Directory) -> tuple[list[Source], list[Stream]]:
    """Everything a receiver needs, secrets decrypted (for the receiver process only)."""
    with directory.db.session() as s:
        names = {u.id: u.name for u in s.scalars(select(User)).all()}
        active = {u.name for u in s.scalars(select(User).where(User.status == "active")).all()}
        shared = shared_access(s)
        sources = [
            Source(
                r.id,
                r.name,
                names[r.owner_id],
                tuple(json.loads(r.tags)),
                directory.vault.decrypt(r.shared_key_enc) if r.shared_key_enc else None,
                r.token_hash,
                r.max_bytes_per_s,
                r.max_message_bytes,
            )
            for r in s.scalars(select(IngestSource)).all()
            if not r.disabled and names.get(r.owner_id) in active
        ]
        streams = []
        for r in s.scalars(select(IngestStream).order_by(IngestStream.position, IngestStream.id)):
            writers = {u for u in active if r.bucket.startswith(f"{u}-")}
            writers |= {u for u, b in shared.items() if b.get(r.bucket) == "write"}
            streams.append(
                Stream(
                    r.id,
                    r.name,
                    names[r.owner_id],
                    r.kind,
                    r.bucket,
                    r.prefix,
                    tuple(json.loads(r.tags)),
                    frozenset(writers),
                )
            )
    return sources, streams
