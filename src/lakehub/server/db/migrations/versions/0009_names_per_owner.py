"""dataset, stream and source names are per owner, not global

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

# SQLite keeps the old constraints unnamed: batch mode names them by this convention (PostgreSQL's
# own default name) so they can be dropped; the ingestion tables keep ids never reused
CONVENTION = {"uq": "%(table_name)s_%(column_0_name)s_key"}
TABLES = {
    "datasets": {},
    "ingest_sources": {"sqlite_autoincrement": True},
    "ingest_streams": {"sqlite_autoincrement": True},
}


def _unique(old: list[str], new: list[str]) -> None:
    # SQLite rebuilds each table, and dropping the old streams table would delete the errors
    # that point at it (foreign keys are on): they are kept aside and put back
    errors = sa.table(
        "ingest_errors", *(sa.column(c) for c in ("id", "stream_id", "at", "count", "message"))
    )
    bind = op.get_bind()
    kept = [dict(r._mapping) for r in bind.execute(sa.select(errors))]
    for table, kwargs in TABLES.items():
        with op.batch_alter_table(
            table, naming_convention=CONVENTION, table_kwargs=kwargs
        ) as batch_op:
            batch_op.drop_constraint(f"{table}_{old[0]}_key", type_="unique")
            batch_op.create_unique_constraint(f"{table}_{new[0]}_key", new)
    if kept and not bind.execute(sa.select(sa.func.count()).select_from(errors)).scalar():
        op.bulk_insert(errors, kept)


def upgrade() -> None:
    _unique(["name"], ["owner_id", "name"])


def downgrade() -> None:  # refused by the database if two owners now share a name
    _unique(["owner_id", "name"], ["name"])
