"""Metadata: SQLAlchemy 2 models, sessions, and Alembic migrations (SQLite WAL or PostgreSQL)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    BigInteger,
    Float,
    ForeignKey,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    event,
)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    Session,
    mapped_column,
    relationship,
    sessionmaker,
)


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    admin: Mapped[bool] = mapped_column(default=False)
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending|active|disabled
    password_hash: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    approved_by: Mapped[str | None] = mapped_column(String(64))
    keys: Mapped[list[LakeKey]] = relationship(back_populates="user", cascade="all, delete-orphan")


class LakeKey(Base):
    __tablename__ = "lake_keys"
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    access_key: Mapped[str] = mapped_column(String(64), unique=True)
    secret_enc: Mapped[str] = mapped_column(String(512))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column()
    user: Mapped[User] = relationship(back_populates="keys")


class Group(Base):
    __tablename__ = "groups"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class GroupMember(Base):
    __tablename__ = "group_members"
    __table_args__ = (UniqueConstraint("group_id", "user_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    group_id: Mapped[int] = mapped_column(ForeignKey("groups.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))


class Space(Base):
    """A shared bucket (``space-<name>``) whose readers and writers its owner chooses."""

    __tablename__ = "spaces"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Grant(Base):
    """``read`` or ``write`` on a space, to one user or to every member of a group."""

    __tablename__ = "grants"
    __table_args__ = (UniqueConstraint("space_id", "user_id", "group_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    space_id: Mapped[int] = mapped_column(ForeignKey("spaces.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    group_id: Mapped[int | None] = mapped_column(ForeignKey("groups.id", ondelete="CASCADE"))
    access: Mapped[str] = mapped_column(String(8))  # read | write
    granted_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Event(Base):
    """Who did what, when: the audit trail admins read."""

    __tablename__ = "events"
    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(256))
    detail: Mapped[str] = mapped_column(String(1024), default="")


class Dataset(Base):
    """A catalogued lake path: where it is, what it holds (inferred), and what people say of it."""

    __tablename__ = "datasets"
    __table_args__ = (UniqueConstraint("owner_id", "name"),)  # names are per owner
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    bucket: Mapped[str] = mapped_column(String(63), index=True)
    prefix: Mapped[str] = mapped_column(String(1024))
    format: Mapped[str] = mapped_column(String(16))  # parquet | csv | jsonl | zarr | raw
    partitioning: Mapped[str] = mapped_column(String(256), default="")  # "year,month,day"
    description: Mapped[str] = mapped_column(Text, default="")
    tags: Mapped[str] = mapped_column(String(1024), default="")  # ",a,b," for LIKE search
    lineage: Mapped[str] = mapped_column(Text, default="")
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    schema_json: Mapped[str] = mapped_column(Text, default="[]")  # [{"name", "type"}, ...]
    partitions_json: Mapped[str] = mapped_column(Text, default="{}")  # {"year": ["2024"]}
    row_count: Mapped[int | None] = mapped_column(BigInteger)
    size_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    file_count: Mapped[int] = mapped_column(default=0)
    one_file: Mapped[bool] = mapped_column(default=False)  # the path is a file, not a folder
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class Connection(Base):
    """An external S3-compatible endpoint a user registered; the secret is vault-encrypted."""

    __tablename__ = "connections"
    __table_args__ = (UniqueConstraint("owner_id", "name"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    endpoint_url: Mapped[str] = mapped_column(String(512))
    region: Mapped[str] = mapped_column(String(64), default="us-east-1")
    access_key: Mapped[str] = mapped_column(String(256))
    secret_enc: Mapped[str] = mapped_column(String(2048))
    bucket: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Quota(Base):
    """Limits for a user's own buckets (kind ``user``) or a space (kind ``space``)."""

    __tablename__ = "quotas"
    __table_args__ = (UniqueConstraint("kind", "name"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(8))  # user | space
    name: Mapped[str] = mapped_column(String(64))
    max_bytes: Mapped[int | None] = mapped_column(BigInteger)
    max_objects: Mapped[int | None] = mapped_column(BigInteger)
    used_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    used_objects: Mapped[int] = mapped_column(BigInteger, default=0)
    measured_at: Mapped[datetime | None] = mapped_column()
    blocked: Mapped[bool] = mapped_column(default=False)
    set_by: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class EnvVar(Base):
    """An environment variable for a user's notebook servers; the value is vault-encrypted."""

    __tablename__ = "env_vars"
    __table_args__ = (UniqueConstraint("owner_id", "name"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(128))
    value_enc: Mapped[str] = mapped_column(Text)
    secret: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class Environment(Base):
    """A notebook environment's spec and build state (see ``lakehub.server.notebooks.registry``)."""

    __tablename__ = "environments"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(32), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    python: Mapped[str] = mapped_column(String(8))
    packages: Mapped[str] = mapped_column(Text, default="[]")  # JSON list of requirements
    builtin: Mapped[bool] = mapped_column(default=False)
    status: Mapped[str] = mapped_column(String(16), default="queued")  # queued|building|ready|...
    progress: Mapped[str] = mapped_column(String(200), default="")
    error: Mapped[str] = mapped_column(Text, default="")
    built_hash: Mapped[str | None] = mapped_column(String(16))  # the build servers use
    contents: Mapped[str] = mapped_column(Text, default="[]")  # JSON ["name==version", ...]
    built_at: Mapped[datetime | None] = mapped_column()
    updated_by: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class Size(Base):
    """A notebook server size: CPU cores and memory bytes, kernels included."""

    __tablename__ = "sizes"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(32), unique=True)
    cpus: Mapped[float] = mapped_column(Float)
    memory: Mapped[int] = mapped_column(BigInteger)
    description: Mapped[str] = mapped_column(Text, default="")


class NotebookPolicy(Base):
    """Per-group choices and limits (kind ``group``) or a user's own quotas (kind ``user``).

    A null field means "not set here"; see ``lakehub.server.notebooks.policy`` for how they
    combine."""

    __tablename__ = "notebook_policies"
    __table_args__ = (UniqueConstraint("kind", "name"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(8))  # user | group
    name: Mapped[str] = mapped_column(String(64))
    environments: Mapped[str | None] = mapped_column(Text)  # JSON list: allowed choices
    sizes: Mapped[str | None] = mapped_column(Text)
    default_environment: Mapped[str | None] = mapped_column(String(32))
    default_size: Mapped[str | None] = mapped_column(String(32))
    max_servers: Mapped[int | None] = mapped_column()
    max_memory: Mapped[int | None] = mapped_column(BigInteger)
    cull_timeout: Mapped[int | None] = mapped_column()
    updated_by: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class IngestSource(Base):
    """Who may push data in (Forward or HTTP): its tags, its secrets, its limits."""

    __tablename__ = "ingest_sources"
    # ids are never reused: the log names sources and streams by id (and a reused source id
    # would take another's chunk ids for retries); names are per owner
    __table_args__ = (UniqueConstraint("owner_id", "name"), {"sqlite_autoincrement": True})
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    tags: Mapped[str] = mapped_column(Text, default="[]")  # JSON list of glob patterns
    shared_key_enc: Mapped[str | None] = mapped_column(Text)  # vault-encrypted; None: no handshake
    token_hash: Mapped[str] = mapped_column(String(64), index=True)  # sha256 hex of the token
    max_bytes_per_s: Mapped[int | None] = mapped_column(BigInteger)
    max_message_bytes: Mapped[int] = mapped_column(BigInteger)
    disabled: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class IngestStream(Base):
    """Where routed data lands: a record dataset (Parquet) or a raw byte stream, with counters."""

    __tablename__ = "ingest_streams"
    # ids are never reused: the log names sources and streams by id (and a reused source id
    # would take another's chunk ids for retries); names are per owner
    __table_args__ = (UniqueConstraint("owner_id", "name"), {"sqlite_autoincrement": True})
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(8))  # records | raw
    bucket: Mapped[str] = mapped_column(String(63))
    prefix: Mapped[str] = mapped_column(String(1024))
    tags: Mapped[str] = mapped_column(Text, default="[]")  # JSON list: routing glob patterns
    position: Mapped[int] = mapped_column(default=100)  # lower routes first
    dataset: Mapped[str | None] = mapped_column(String(64))  # catalog name (records)
    received_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    received_entries: Mapped[int] = mapped_column(BigInteger, default=0)
    last_event_at: Mapped[float | None] = mapped_column(Float)  # unix seconds
    rate_bytes: Mapped[float] = mapped_column(Float, default=0.0)  # per second, recent
    rate_entries: Mapped[float] = mapped_column(Float, default=0.0)
    moved_records: Mapped[int] = mapped_column(BigInteger, default=0)
    moved_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    moved_until: Mapped[float | None] = mapped_column(Float)  # receive time of the last moved
    errors: Mapped[int] = mapped_column(BigInteger, default=0)
    last_error: Mapped[str] = mapped_column(Text, default="")
    # records: the settled type of every field, as the lake writer keeps it (ingest/schema.py)
    schema_json: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class IngestError(Base):
    """A stream's recent errors, newest last (the lake writers keep the last 50 of each)."""

    __tablename__ = "ingest_errors"
    id: Mapped[int] = mapped_column(primary_key=True)
    stream_id: Mapped[int] = mapped_column(
        ForeignKey("ingest_streams.id", ondelete="CASCADE"), index=True
    )
    at: Mapped[datetime] = mapped_column(default=utcnow)
    count: Mapped[int] = mapped_column(default=1)  # errors of this kind since the one before
    message: Mapped[str] = mapped_column(Text)


class IngestCheckpoint(Base):
    """How far the local log has reached the lake (row 1), how far each stream's parked
    batches have (row ``-<stream id>``: the key of its last landed parked batch), and how far
    the log was counted into the streams' "received" counters (row 0)."""

    __tablename__ = "ingest_checkpoint"
    id: Mapped[int] = mapped_column(primary_key=True)
    segment: Mapped[int] = mapped_column(BigInteger, default=0)
    offset: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class Task(Base):
    """A background task a user submitted: its state survives the notebook that started it."""

    __tablename__ = "tasks"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    state: Mapped[str] = mapped_column(String(16), default="queued")  # queued|running|done|failed
    error: Mapped[str] = mapped_column(Text, default="")
    result: Mapped[str] = mapped_column(String(1024), default="")  # s3:// of the pickled result
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column()
    finished_at: Mapped[datetime | None] = mapped_column()


def make_engine(url: str) -> Engine:
    kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if url.startswith("sqlite"):
        kwargs["connect_args"] = {"timeout": 30, "check_same_thread": False}
    engine = create_engine(url, **kwargs)
    if url.startswith("sqlite"):

        @event.listens_for(engine, "connect")
        def _pragmas(conn: Any, _record: Any) -> None:
            cur = conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

    return engine


HEAD = "0018"  # the newest migration; tests check it against Alembic's own view


def at_head(url: str) -> bool:
    """True if the schema is already at :data:`HEAD` (checked without importing Alembic)."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return bool(
                conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar() == HEAD
            )
    except Exception:  # no database or table yet
        return False
    finally:
        engine.dispose()


def upgrade(url: str) -> None:
    """Bring the schema to the newest revision."""
    if at_head(url):
        return
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    command.upgrade(cfg, "head")


class Database:
    def __init__(self, url: str) -> None:
        self.engine = make_engine(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        # called after a transaction that recorded an audited change has committed (see
        # ``Directory.record_event``): other processes learn of it before the caller answers
        self.on_change: list[Callable[[], None]] = []

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self._sessions() as s:
            with s.begin():
                yield s
            if s.info.pop("changed", False):
                for hook in self.on_change:
                    try:
                        hook()
                    except OSError as err:  # committed all the same: others learn of it later
                        logging.getLogger("lakehub.db").error("after a change: %s", err)
