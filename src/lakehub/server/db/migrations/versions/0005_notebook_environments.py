"""notebook environments, sizes and per-group policies

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

GiB = 2**30


def upgrade() -> None:
    op.create_table(
        "environments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("python", sa.String(length=8), nullable=False),
        sa.Column("packages", sa.Text(), nullable=False),
        sa.Column("builtin", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("progress", sa.String(length=200), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("built_hash", sa.String(length=16), nullable=True),
        sa.Column("contents", sa.Text(), nullable=False),
        sa.Column("built_at", sa.DateTime(), nullable=True),
        sa.Column("updated_by", sa.String(length=64), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    sizes = op.create_table(
        "sizes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("cpus", sa.Float(), nullable=False),
        sa.Column("memory", sa.BigInteger(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "notebook_policies",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("environments", sa.Text(), nullable=True),
        sa.Column("sizes", sa.Text(), nullable=True),
        sa.Column("default_environment", sa.String(length=32), nullable=True),
        sa.Column("default_size", sa.String(length=32), nullable=True),
        sa.Column("max_servers", sa.Integer(), nullable=True),
        sa.Column("max_memory", sa.BigInteger(), nullable=True),
        sa.Column("cull_timeout", sa.Integer(), nullable=True),
        sa.Column("updated_by", sa.String(length=64), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("kind", "name"),
    )
    # the default sizes, once: an administrator may change or remove them afterwards
    op.bulk_insert(
        sizes,
        [
            {"name": "small", "cpus": 1.0, "memory": 2 * GiB, "description": "1 CPU, 2 GiB"},
            {"name": "medium", "cpus": 2.0, "memory": 4 * GiB, "description": "2 CPUs, 4 GiB"},
            {"name": "large", "cpus": 4.0, "memory": 8 * GiB, "description": "4 CPUs, 8 GiB"},
        ],
    )


def downgrade() -> None:
    op.drop_table("notebook_policies")
    op.drop_table("sizes")
    op.drop_table("environments")
