"""db_url: LakeHub's metadata in a real PostgreSQL instead of the SQLite file in the data dir."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from alembic.config import Config
from alembic.script import ScriptDirectory

import lakehub.server.db
from conftest import Hub, s3_for, start_hub, stop_hub
from servers.postgres import PostgresServer, start_postgres

MIGRATIONS = Path(lakehub.server.db.__file__).parent / "migrations"


def head_revision() -> str:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    head = ScriptDirectory.from_config(cfg).get_current_head()
    assert head
    return head


@pytest.fixture(scope="module")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    try:
        server = start_postgres(tmp_path_factory.mktemp("pg"))
    except RuntimeError as err:
        pytest.skip(str(err))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def engine(postgres: PostgresServer) -> Iterator[sa.Engine]:
    eng = sa.create_engine(postgres.url)
    yield eng
    eng.dispose()


class PgHub:
    """The hub on PostgreSQL, and whether the test module has stopped it already."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.stopped = False

    def stop(self) -> None:
        if not self.stopped:
            self.stopped = True
            stop_hub(self.hub)


@pytest.fixture(scope="module")
def pg_hub(postgres: PostgresServer) -> Iterator[PgHub]:
    h = PgHub(start_hub(wait_for=(), db_url=postgres.url))
    try:
        yield h
    finally:
        h.stop()


def users_in(engine: sa.Engine) -> dict[str, tuple[bool, str]]:
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT name, admin, status FROM users")).all()
    return {name: (admin, status) for name, admin, status in rows}


def test_schema_is_migrated_to_head_in_postgres(pg_hub: PgHub, engine: sa.Engine) -> None:
    tables = set(sa.inspect(engine).get_table_names())
    assert {"users", "lake_keys", "groups", "group_members", "events", "alembic_version"} <= tables
    with engine.connect() as conn:
        versions = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalars().all()
    assert versions == [head_revision()]
    # the first administrator was created there by 'lakehub up'
    assert users_in(engine)["admin"] == (True, "active")


def test_add_user_goes_to_postgres(pg_hub: PgHub, engine: sa.Engine) -> None:
    hub = pg_hub.hub
    hub.add_user("pgu")
    assert users_in(engine)["pgu"] == (False, "active")
    with engine.connect() as conn:
        keys = (
            conn.execute(
                sa.text(
                    "SELECT k.access_key FROM lake_keys k JOIN users u ON u.id = k.user_id "
                    "WHERE u.name = 'pgu' AND k.revoked_at IS NULL"
                )
            )
            .scalars()
            .all()
        )
        created = conn.execute(
            sa.text("SELECT count(*) FROM events WHERE action = 'user.create' AND target = 'pgu'")
        ).scalar_one()
    assert len(keys) == 1
    assert created == 1
    # the key recorded in PostgreSQL is the one the user gets, and it works on the lake
    creds = hub.http("pgu").get("/services/lakehub/api/lake/credentials").json()
    assert creds["access_key_id"] == keys[0] and creds["bucket"] == "pgu-home"
    s3 = s3_for(creds)
    s3.put_object(Bucket="pgu-home", Key="k", Body=b"pg")
    assert s3.get_object(Bucket="pgu-home", Key="k")["Body"].read() == b"pg"


def test_admin_and_user_log_in_with_passwords_from_postgres(pg_hub: PgHub) -> None:
    hub = pg_hub.hub
    with closing(hub.browser_login("admin", hub.admin_password)) as c:
        r = c.get("/services/lakehub/admin")
        assert r.status_code == 200 and r.url.path == "/services/lakehub/admin"
        assert "pgu" in r.text  # the user list is read from PostgreSQL
    if "pgu" not in hub.passwords:
        hub.add_user("pgu")
    with closing(hub.browser_login("pgu")) as c:
        assert "Welcome, pgu" in c.get("/services/lakehub/").text
    with httpx.Client(base_url=hub.url, timeout=60) as c:
        c.get("/hub/login")
        r = c.post(
            "/hub/login",
            data={
                "username": "pgu",
                "password": "wrong-password",
                "_xsrf": c.cookies.get("_xsrf", ""),
            },
        )
        assert r.status_code == 403


def test_no_metadata_in_the_sqlite_file(pg_hub: PgHub) -> None:
    path = pg_hub.hub.data_dir / "state" / "lakehub.sqlite"
    if path.exists():
        with closing(sqlite3.connect(path)) as db:
            tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master")}
            assert "users" not in tables, f"{path} holds a users table"


def test_experiments_and_models_live_in_postgres(pg_hub: PgHub, engine: sa.Engine) -> None:
    """MLflow's client against the hub on PostgreSQL: runs, metrics sorted, a registered version
    and alias moves (serialised with a row lock there) land in its tables."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    import lakehub
    import lakehub.models as models

    hub = pg_hub.hub
    hub.add_user("pgml")
    os.environ["MLFLOW_TRACKING_TOKEN"] = hub.token("pgml")
    try:
        client = MlflowClient(tracking_uri=f"{hub.url}/services/lakehub/mlflow")
        exp = client.create_experiment("pg")
        runs = [client.create_run(exp).info.run_id for _ in range(3)]
        for i, run in enumerate(runs):
            client.log_batch(run, metrics=[Metric("auc", 0.5 + i / 10, 0, s) for s in range(3)])
        best = client.search_runs([exp], order_by=["metrics.auc DESC"], max_results=1)[0]
        assert best.info.run_id == runs[-1]
        client.log_text(runs[-1], "w", "model/w.txt")
        client.create_registered_model("pgm")
        for _ in range(2):
            client.create_model_version("pgm", f"runs:/{runs[-1]}/model", runs[-1])
        client.set_registered_model_alias("pgm", "champion", "1")
        client.set_registered_model_alias("pgm", "champion", "2")
    finally:
        os.environ.pop("MLFLOW_TRACKING_TOKEN", None)
    with lakehub.connect(hub.url, hub.token("pgml")) as c:
        assert models.rollback("pgm", "champion", client=c) == 1
    with engine.connect() as conn:
        count = conn.execute(sa.text("SELECT count(*) FROM ml_metrics")).scalar_one()
        moves = (
            conn.execute(sa.text("SELECT action FROM ml_alias_events ORDER BY id")).scalars().all()
        )
    assert count == 9 and moves == ["set", "set", "rollback"]


def test_data_outlives_the_hub(pg_hub: PgHub, engine: sa.Engine) -> None:
    if "pgu" not in pg_hub.hub.passwords:
        pg_hub.hub.add_user("pgu")
    data_dir = pg_hub.hub.data_dir
    pg_hub.stop()
    assert not data_dir.exists()  # the hub and its data dir are gone...
    users = users_in(engine)  # ...and PostgreSQL still has everything
    assert users["pgu"] == (False, "active")
    assert users["admin"] == (True, "active")
    with engine.connect() as conn:
        assert (
            conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one()
            == head_revision()
        )
        assert conn.execute(sa.text("SELECT count(*) FROM lake_keys")).scalar_one() >= 2
