"""The migrations and the models agree, and the fast path knows the newest revision."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from lakehub.server import db


def test_head_constant_is_alembics_head() -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(db.__file__).parent / "migrations"))
    assert ScriptDirectory.from_config(cfg).get_current_head() == db.HEAD


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
    from alembic import command
    from sqlalchemy import text

    url = f"sqlite:///{tmp_path / 'old.sqlite'}"
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(db.__file__).parent / "migrations"))
    cfg.set_main_option("sqlalchemy.url", url)
    command.upgrade(cfg, "0005")
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
