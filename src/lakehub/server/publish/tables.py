"""The area's metadata (migration 0015). A publication is its owner's; its link is stored
encrypted (the owner sees it again) and by its hash (how a page is found). Each publish is a new
version, never changed after it is rendered: its page's SHA-256 is kept, and a page whose bytes in
the lake no longer match is not shown. Times are milliseconds since the epoch."""

from __future__ import annotations

from sqlalchemy import BigInteger, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from lakehub.server.db import Base


class Publication(Base):
    __tablename__ = "publications"
    __table_args__ = (UniqueConstraint("owner", "name"), {"sqlite_autoincrement": True})
    id: Mapped[int] = mapped_column(primary_key=True)
    owner: Mapped[str] = mapped_column(String(64), index=True)
    name: Mapped[str] = mapped_column(String(63))
    title: Mapped[str] = mapped_column(String(200))
    audience: Mapped[str] = mapped_column(String(16))  # private | space | hub | public
    space: Mapped[str] = mapped_column(String(64), default="")  # audience space: its name
    link_hash: Mapped[str] = mapped_column(String(64), unique=True)
    link_sealed: Mapped[str] = mapped_column(Text)  # the vault's
    expires_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    views: Mapped[int] = mapped_column(Integer, default=0)  # by anyone but its owner
    created_ms: Mapped[int] = mapped_column(BigInteger)
    updated_ms: Mapped[int] = mapped_column(BigInteger)


class PublishedVersion(Base):
    __tablename__ = "published_versions"
    __table_args__ = (UniqueConstraint("publication_id", "version"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    publication_id: Mapped[int] = mapped_column(
        ForeignKey("publications.id", ondelete="CASCADE"), index=True
    )
    version: Mapped[int] = mapped_column(Integer)
    source: Mapped[str] = mapped_column(Text)  # what was published: a file, a lake path, a run
    state: Mapped[str] = mapped_column(String(16))  # rendering | ready | failed
    message: Mapped[str] = mapped_column(Text, default="")  # why it failed; what was cut
    notebook_bytes: Mapped[int] = mapped_column(BigInteger)
    page_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    page_sha256: Mapped[str] = mapped_column(String(64), default="")
    created_ms: Mapped[int] = mapped_column(BigInteger)
    rendered_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
