"""The area's metadata, in LakeHub's database (migration 0010).

Every experiment and registered model lives in a bucket: its owner's home bucket or a space's.
That bucket decides who reads and writes it, exactly as for the lake's files (see ``owners``).
Times are milliseconds since the epoch, as MLflow speaks them. Ids are never reused.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from lakehub.server.db import Base


class Experiment(Base):
    __tablename__ = "ml_experiments"
    __table_args__ = (UniqueConstraint("bucket", "name"), {"sqlite_autoincrement": True})
    id: Mapped[int] = mapped_column(primary_key=True)
    bucket: Mapped[str] = mapped_column(String(63), index=True)
    name: Mapped[str] = mapped_column(String(256))
    creator: Mapped[str] = mapped_column(String(64))
    lifecycle: Mapped[str] = mapped_column(String(16), default="active")  # active | deleted
    tags: Mapped[str] = mapped_column(Text, default="{}")  # JSON object
    created_ms: Mapped[int] = mapped_column(BigInteger)
    updated_ms: Mapped[int] = mapped_column(BigInteger)
    deleted_ms: Mapped[int | None] = mapped_column(BigInteger)


class Run(Base):
    __tablename__ = "ml_runs"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    experiment_id: Mapped[int] = mapped_column(
        ForeignKey("ml_experiments.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(256), default="")
    creator: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="RUNNING")
    lifecycle: Mapped[str] = mapped_column(String(16), default="active")
    start_ms: Mapped[int] = mapped_column(BigInteger, index=True)
    end_ms: Mapped[int | None] = mapped_column(BigInteger)
    deleted_ms: Mapped[int | None] = mapped_column(BigInteger)
    inputs: Mapped[str] = mapped_column(Text, default="[]")  # JSON: MLflow's dataset inputs
    outputs: Mapped[str] = mapped_column(Text, default="[]")  # JSON: [{"model_id", "step"}]


class Param(Base):
    __tablename__ = "ml_params"
    run_id: Mapped[str] = mapped_column(
        ForeignKey("ml_runs.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(250), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class RunTag(Base):
    __tablename__ = "ml_run_tags"
    run_id: Mapped[str] = mapped_column(
        ForeignKey("ml_runs.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(250), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class Metric(Base):
    """Every logged value: the history a chart draws."""

    __tablename__ = "ml_metrics"
    __table_args__ = (Index("ix_ml_metrics_run_key", "run_id", "key"),)
    # BIGINT on PostgreSQL; on SQLite only INTEGER PRIMARY KEY numbers rows by itself
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("ml_runs.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(250))
    value: Mapped[float | None] = mapped_column(Float)  # None: NaN (SQLite keeps no NaN)
    timestamp: Mapped[int] = mapped_column(BigInteger)
    step: Mapped[int] = mapped_column(BigInteger, default=0)


class LatestMetric(Base):
    """Each run's last value of each metric (highest step, then newest): what tables sort on."""

    __tablename__ = "ml_latest_metrics"
    __table_args__ = (Index("ix_ml_latest_metrics_key_value", "key", "value"),)
    run_id: Mapped[str] = mapped_column(
        ForeignKey("ml_runs.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(250), primary_key=True)
    value: Mapped[float | None] = mapped_column(Float)  # None: NaN (SQLite keeps no NaN)
    timestamp: Mapped[int] = mapped_column(BigInteger)
    step: Mapped[int] = mapped_column(BigInteger)


class LoggedModel(Base):
    __tablename__ = "ml_logged_models"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)  # m-<32 hex>
    experiment_id: Mapped[int] = mapped_column(
        ForeignKey("ml_experiments.id", ondelete="CASCADE"), index=True
    )
    run_id: Mapped[str | None] = mapped_column(String(32), index=True)
    name: Mapped[str] = mapped_column(String(256))
    model_type: Mapped[str] = mapped_column(String(64), default="")
    status: Mapped[str] = mapped_column(String(32), default="LOGGED_MODEL_PENDING")
    creator: Mapped[str] = mapped_column(String(64))
    tags: Mapped[str] = mapped_column(Text, default="{}")
    params: Mapped[str] = mapped_column(Text, default="{}")
    created_ms: Mapped[int] = mapped_column(BigInteger)
    updated_ms: Mapped[int] = mapped_column(BigInteger)


class RegisteredModel(Base):
    __tablename__ = "ml_registered_models"
    __table_args__ = (UniqueConstraint("bucket", "name"), {"sqlite_autoincrement": True})
    id: Mapped[int] = mapped_column(primary_key=True)
    bucket: Mapped[str] = mapped_column(String(63), index=True)
    name: Mapped[str] = mapped_column(String(256))
    creator: Mapped[str] = mapped_column(String(64))
    description: Mapped[str] = mapped_column(Text, default="")
    tags: Mapped[str] = mapped_column(Text, default="{}")
    created_ms: Mapped[int] = mapped_column(BigInteger)
    updated_ms: Mapped[int] = mapped_column(BigInteger)


class ModelVersion(Base):
    """A registered version: its files copied into the model's bucket when registered (so whoever
    may read the model reads them, and the run's deletion leaves them), with its lineage."""

    __tablename__ = "ml_model_versions"
    __table_args__ = (UniqueConstraint("model_id", "version"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    model_id: Mapped[int] = mapped_column(
        ForeignKey("ml_registered_models.id", ondelete="CASCADE"), index=True
    )
    version: Mapped[int] = mapped_column()
    source: Mapped[str] = mapped_column(Text)  # as the client gave it
    run_id: Mapped[str | None] = mapped_column(String(32))
    logged_model_id: Mapped[str | None] = mapped_column(String(40))
    status: Mapped[str] = mapped_column(String(32), default="READY")
    status_message: Mapped[str] = mapped_column(Text, default="")
    creator: Mapped[str] = mapped_column(String(64))
    description: Mapped[str] = mapped_column(Text, default="")
    tags: Mapped[str] = mapped_column(Text, default="{}")
    lineage: Mapped[str] = mapped_column(Text, default="{}")  # JSON: run, datasets, env, code
    size_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    created_ms: Mapped[int] = mapped_column(BigInteger)
    updated_ms: Mapped[int] = mapped_column(BigInteger)


class Alias(Base):
    __tablename__ = "ml_aliases"
    model_id: Mapped[int] = mapped_column(
        ForeignKey("ml_registered_models.id", ondelete="CASCADE"), primary_key=True
    )
    alias: Mapped[str] = mapped_column(String(256), primary_key=True)
    version: Mapped[int] = mapped_column()


class AliasEvent(Base):
    """Which version an alias pointed to, from when, moved by whom: appended with every move."""

    __tablename__ = "ml_alias_events"
    __table_args__ = (Index("ix_ml_alias_events_model_alias", "model_id", "alias"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("ml_registered_models.id", ondelete="CASCADE"))
    alias: Mapped[str] = mapped_column(String(256))
    old_version: Mapped[int | None] = mapped_column()
    new_version: Mapped[int | None] = mapped_column()
    action: Mapped[str] = mapped_column(String(32))  # set | delete | rollback | version-deleted
    actor: Mapped[str] = mapped_column(String(64))
    at_ms: Mapped[int] = mapped_column(BigInteger)


class Trash(Base):
    """Files of deleted runs, versions and experiments, freed once ``due_ms`` has passed."""

    __tablename__ = "ml_trash"
    id: Mapped[int] = mapped_column(primary_key=True)
    bucket: Mapped[str] = mapped_column(String(63))
    prefix: Mapped[str] = mapped_column(String(1024))
    what: Mapped[str] = mapped_column(String(256))
    due_ms: Mapped[int] = mapped_column(BigInteger, index=True)


class Retention(Base):
    """How long a bucket's finished runs are kept (a space's policy): older ones are deleted,
    and their files freed after the grace period."""

    __tablename__ = "ml_retention"
    bucket: Mapped[str] = mapped_column(String(63), primary_key=True)
    run_days: Mapped[int] = mapped_column()
    set_by: Mapped[str] = mapped_column(String(64))
    updated_ms: Mapped[int] = mapped_column(BigInteger)
