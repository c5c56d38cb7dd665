"""The area's metadata, in LakeHub's database (migration 0011).

An endpoint lives in a bucket, as a registered model does (its owner's home bucket or a space's),
and that bucket decides who calls and changes it (see ``lakehub.server.models.owners``). Its
model is named as its creator named it (``name`` or ``owner.name``, resolved once: the model's
id is kept). Times are milliseconds since the epoch.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from lakehub.server.db import Base


class Endpoint(Base):
    __tablename__ = "serving_endpoints"
    __table_args__ = (UniqueConstraint("bucket", "name"), {"sqlite_autoincrement": True})
    id: Mapped[int] = mapped_column(primary_key=True)
    bucket: Mapped[str] = mapped_column(String(63), index=True)
    name: Mapped[str] = mapped_column(String(63))
    creator: Mapped[str] = mapped_column(String(64))
    model_id: Mapped[int] = mapped_column(
        ForeignKey("ml_registered_models.id", ondelete="CASCADE"), index=True
    )
    ref: Mapped[str] = mapped_column(String(256))  # "@alias" or a version number
    version: Mapped[int | None] = mapped_column(Integer)  # what serves now
    replicas: Mapped[int] = mapped_column(Integer, default=1)
    size: Mapped[str] = mapped_column(String(64))
    environment: Mapped[str] = mapped_column(String(64), default="")  # "" : the model's own
    follow: Mapped[bool] = mapped_column(Boolean, default=False)  # redeploy when the alias moves
    batching: Mapped[bool] = mapped_column(Boolean, default=False)
    canary_ref: Mapped[str] = mapped_column(String(256), default="")
    canary_version: Mapped[int | None] = mapped_column(Integer)
    canary_share: Mapped[int] = mapped_column(Integer, default=0)  # percent of requests
    status: Mapped[str] = mapped_column(String(16), default="deploying")
    message: Mapped[str] = mapped_column(Text, default="")
    created_ms: Mapped[int] = mapped_column(BigInteger)
    updated_ms: Mapped[int] = mapped_column(BigInteger)


class Rollout(Base):
    """One change of what an endpoint serves: started, then done or failed (and why)."""

    __tablename__ = "serving_rollouts"
    id: Mapped[int] = mapped_column(primary_key=True)
    endpoint_id: Mapped[int] = mapped_column(
        ForeignKey("serving_endpoints.id", ondelete="CASCADE"), index=True
    )
    role: Mapped[str] = mapped_column(String(16))  # main | canary
    version: Mapped[int] = mapped_column(Integer)
    replicas: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(String(64))  # deploy, update, alias moved, restart ...
    actor: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16), default="starting")  # starting|done|failed
    message: Mapped[str] = mapped_column(Text, default="")
    started_ms: Mapped[int] = mapped_column(BigInteger)
    ended_ms: Mapped[int | None] = mapped_column(BigInteger)


class EndpointToken(Base):
    """An application token for one endpoint: kept as its SHA-256 only (shown once)."""

    __tablename__ = "serving_tokens"
    id: Mapped[int] = mapped_column(primary_key=True)
    endpoint_id: Mapped[int] = mapped_column(
        ForeignKey("serving_endpoints.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(64))
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    hint: Mapped[str] = mapped_column(String(16))  # the token's first characters
    creator: Mapped[str] = mapped_column(String(64))
    created_ms: Mapped[int] = mapped_column(BigInteger)
    revoked_ms: Mapped[int | None] = mapped_column(BigInteger)
