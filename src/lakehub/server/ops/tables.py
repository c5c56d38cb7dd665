"""Alerts and silences, in LakeHub's database (migration 0018). Times are milliseconds since
the epoch.

An alert is one episode of one rule for one set of labels: written when it fires, closed when it
resolves; it is never deleted, so the history is the table. ``user`` is the label ``user`` of the
series that fired ("" for the platform's own): that user sees the alert too.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from lakehub.server.db import Base


class OpsAlert(Base):
    __tablename__ = "ops_alerts"
    __table_args__ = (Index("ix_ops_alerts_open", "resolved_ms", "fingerprint"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    rule: Mapped[str] = mapped_column(String(64), index=True)
    fingerprint: Mapped[str] = mapped_column(String(64))  # the rule and its labels, hashed
    labels: Mapped[str] = mapped_column(Text)  # JSON object
    severity: Mapped[str] = mapped_column(String(16))
    summary: Mapped[str] = mapped_column(Text)
    user: Mapped[str] = mapped_column(String(64), default="", index=True)
    value: Mapped[float] = mapped_column(Float, default=0.0)
    fired_ms: Mapped[int] = mapped_column(BigInteger, index=True)
    resolved_ms: Mapped[int | None] = mapped_column(BigInteger)
    silence_id: Mapped[int | None] = mapped_column(
        ForeignKey("ops_silences.id", ondelete="SET NULL")
    )
    notified: Mapped[int] = mapped_column(Integer, default=0)  # notices sent (fire + resolve)


class OpsSilence(Base):
    __tablename__ = "ops_silences"

    id: Mapped[int] = mapped_column(primary_key=True)
    rule: Mapped[str] = mapped_column(String(64), default="")  # "": every rule
    matchers: Mapped[str] = mapped_column(Text, default="{}")  # JSON: label -> value, all equal
    reason: Mapped[str] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(64))
    created_ms: Mapped[int] = mapped_column(BigInteger)
    ends_ms: Mapped[int] = mapped_column(BigInteger)
    ended_by: Mapped[str] = mapped_column(String(64), default="")  # who lifted it early
