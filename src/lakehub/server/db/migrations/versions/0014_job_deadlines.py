"""jobs' deadlines and staleness alerts

Revision ID: 0014
Revises: 0013
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(
            sa.Column("deadline", sa.String(length=5), nullable=False, server_default="")
        )
        batch.add_column(
            sa.Column("deadline_checked_ms", sa.BigInteger(), nullable=False, server_default="0")
        )
        batch.add_column(
            sa.Column("stale_told", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("stale_told")
        batch.drop_column("deadline_checked_ms")
        batch.drop_column("deadline")
