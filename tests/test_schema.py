"""The migrations and the models agree, and the fast path knows the newest revision."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from lakehub.server import db
from lakehub.server.jobs import tables as _jobs_tables  # noqa: F401
from lakehub.server.models import tables as _model_tables  # noqa: F401  (their tables too)
from lakehub.server.serving import tables as _serving_tables  # noqa: F401


def migrations(url: str = "") -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(db.__file__).parent / "migrations"))
    if url:
        cfg.set_main_option("sqlalchemy.url", url)
    return cfg


def at_revision(tmp_path: Path, revision: str) -> str:
    """The URL of a new SQLite database migrated up to ``revision`` only."""
    from alembic import command

    url = f"sqlite:///{tmp_path / 'old.sqlite'}"
    command.upgrade(migrations(url), revision)
    return url


def test_head_constant_is_alembics_head() -> None:
    assert ScriptDirectory.from_config(migrations()).get_current_head() == db.HEAD


def test_migrations_build_exactly_the_models(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.sqlite'}"
    assert not db.at_head(url)
    db.upgrade(url)
    assert db.at_head(url)
    engine = db.make_engine(url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), db.Base.metadata)
    engine.dispose()
    assert diff == []


def test_a_database_at_an_older_revision_upgrades_and_keeps_its_rows(tmp_path: Path) -> None:
    """A data directory made before the models moved (its database at an older revision, as the
    previous layout left it) upgrades in place at the next start: nothing is lost."""
    from sqlalchemy import text

    url = at_revision(tmp_path, "0005")
    engine = db.make_engine(url)
    with engine.begin() as conn:
        conn.execute(
            text(
                "insert into users (name, status, admin, created_at) "
                "values ('olduser', 'active', 0, '2026-01-01 00:00:00')"
            )
        )
    engine.dispose()
    assert not db.at_head(url)
    db.upgrade(url)
    assert db.at_head(url)
    with db.Database(url).session() as s:
        assert s.query(db.User).filter_by(name="olduser").one().status == "active"


def test_names_become_per_owner_and_a_stream_keeps_its_recent_errors(tmp_path: Path) -> None:
    """Revision 0009 rebuilds the tables whose names were global; on SQLite that drops and
    recreates the streams table, which must not take its recent errors with it."""
    import sqlalchemy as sa

    url = at_revision(tmp_path, "0008")
    engine = db.make_engine(url)
    with engine.begin() as conn:
        for i, name in enumerate(("ann", "bob"), 1):
            conn.execute(
                sa.text(
                    "insert into users (id, name, status, admin, created_at) "
                    "values (:i, :n, 'active', 0, '2026-01-01')"
                ),
                {"i": i, "n": name},
            )
        conn.execute(
            sa.text(
                "insert into ingest_streams (id, name, owner_id, kind, bucket, prefix, tags, "
                "position, received_bytes, received_entries, rate_bytes, rate_entries, "
                "moved_records, moved_bytes, errors, last_error, created_at) values "
                "(7, 'sensors', 1, 'records', 'ann-data', 'sensors', '[]', 100, 0, 0, 0, 0, "
                "0, 0, 1, 'bad', '2026-01-01')"
            )
        )
        conn.execute(
            sa.text(
                "insert into ingest_errors (stream_id, at, count, message) "
                "values (7, '2026-01-01', 3, 'values not of their type')"
            )
        )
    engine.dispose()
    db.upgrade(url)
    with db.Database(url).session() as s:
        assert [(e.stream_id, e.count) for e in s.query(db.IngestError)] == [(7, 3)]
        s.add(
            db.IngestStream(
                name="sensors", owner_id=2, kind="raw", bucket="bob-data", prefix="sensors"
            )
        )
        s.flush()  # another owner's stream of the same name
        assert s.query(db.IngestStream).filter_by(name="sensors").count() == 2
    with db.Database(url).session() as s, pytest.raises(sa.exc.IntegrityError):
        s.add(db.IngestStream(name="sensors", owner_id=2, kind="raw", bucket="b", prefix="p"))
        s.flush()  # but not twice for one owner
