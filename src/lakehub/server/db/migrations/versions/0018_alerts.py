"""alerts with their history, and silences

Revision ID: 0018
Revises: 0017
"""

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ops_silences",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("rule", sa.String(length=64), nullable=False),
        sa.Column("matchers", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("ends_ms", sa.BigInteger(), nullable=False),
        sa.Column("ended_by", sa.String(length=64), nullable=False),
    )
    op.create_table(
        "ops_alerts",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("rule", sa.String(length=64), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("labels", sa.Text(), nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("user", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("fired_ms", sa.BigInteger(), nullable=False),
        sa.Column("resolved_ms", sa.BigInteger(), nullable=True),
        sa.Column(
            "silence_id",
            sa.Integer(),
            sa.ForeignKey("ops_silences.id", ondelete="SET NULL"),
            nullable=True,
        ),
        sa.Column("notified", sa.Integer(), nullable=False),
    )
    op.create_index("ix_ops_alerts_rule", "ops_alerts", ["rule"])
    op.create_index("ix_ops_alerts_user", "ops_alerts", ["user"])
    op.create_index("ix_ops_alerts_fired_ms", "ops_alerts", ["fired_ms"])
    op.create_index("ix_ops_alerts_open", "ops_alerts", ["resolved_ms", "fingerprint"])


def downgrade() -> None:
    op.drop_table("ops_alerts")
    op.drop_table("ops_silences")
