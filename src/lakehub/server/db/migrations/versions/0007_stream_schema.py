"""a record stream's settled schema, kept by the lake writer

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("ingest_streams", schema=None) as batch_op:
        batch_op.add_column(sa.Column("schema_json", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("ingest_streams", schema=None) as batch_op:
        batch_op.drop_column("schema_json")
