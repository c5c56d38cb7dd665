"""jobs in pipelines, backfills, retention and email notices

Revision ID: 0016
Revises: 0015
"""

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("after", sa.Text(), nullable=False, server_default="[]"))
        batch.add_column(
            sa.Column("backfill_parallelism", sa.Integer(), nullable=False, server_default="2")
        )
        batch.add_column(sa.Column("keep_runs", sa.Integer(), nullable=False, server_default="200"))
        batch.add_column(
            sa.Column("email", sa.String(length=254), nullable=False, server_default="")
        )
    with op.batch_alter_table("job_notices") as batch:
        batch.add_column(
            sa.Column("email", sa.String(length=16), nullable=False, server_default="none")
        )
        batch.add_column(
            sa.Column("email_attempts", sa.Integer(), nullable=False, server_default="0")
        )


def downgrade() -> None:
    with op.batch_alter_table("job_notices") as batch:
        batch.drop_column("email_attempts")
        batch.drop_column("email")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("email")
        batch.drop_column("keep_runs")
        batch.drop_column("backfill_parallelism")
        batch.drop_column("after")
