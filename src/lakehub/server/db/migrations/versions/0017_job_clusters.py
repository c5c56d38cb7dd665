"""a Dask cluster for each run of a job

Revision ID: 0017
Revises: 0016
"""

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(
            sa.Column("cluster", sa.String(length=16), nullable=False, server_default="")
        )
        batch.add_column(
            sa.Column("cluster_workers", sa.Integer(), nullable=False, server_default="2")
        )


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("cluster_workers")
        batch.drop_column("cluster")
