"""Self-check: the real test servers start, answer, and stop cleanly."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import ldap3
import pytest
import sqlalchemy as sa

from .postgres import PostgresServer, start_postgres
from .slapd import SlapdServer, start_slapd


def _is_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.fixture
def slapd(tmp_path: Path) -> Iterator[SlapdServer]:
    try:
        server = start_slapd(tmp_path)
    except RuntimeError as err:
        pytest.skip(str(err))
    yield server
    server.stop()


@pytest.fixture
def postgres(tmp_path: Path) -> Iterator[PostgresServer]:
    try:
        server = start_postgres(tmp_path)
    except RuntimeError as err:
        pytest.skip(str(err))
    yield server
    server.stop()


def test_slapd_bind_and_search(slapd: SlapdServer) -> None:
    user_dn = slapd.add_user("alice", "wonderland", mail="alice@lakehub.test")
    server = ldap3.Server(slapd.url, connect_timeout=5)

    conn = ldap3.Connection(server, user=user_dn, password="wonderland", receive_timeout=10)
    assert conn.bind(), conn.result
    assert conn.search(slapd.people_dn, "(uid=alice)", attributes=["mail", "userPassword"])
    assert [e.entry_dn for e in conn.entries] == [user_dn]
    assert conn.entries[0].mail.value == "alice@lakehub.test"
    assert conn.entries[0].userPassword.values  # a user may read their own hash
    conn.unbind()

    anon = ldap3.Connection(server, auto_bind=True, receive_timeout=10)
    assert anon.search(user_dn, "(objectClass=*)", attributes=["uid", "userPassword"])
    assert anon.entries[0].uid.value == "alice"
    assert not anon.response[0]["raw_attributes"].get("userPassword")  # hidden by the ACL
    anon.unbind()

    bad = ldap3.Connection(server, user=user_dn, password="wrong", receive_timeout=10)
    assert not bad.bind()
    assert bad.result["description"] == "invalidCredentials"
    bad.unbind()

    pid = slapd.process.pid
    slapd.stop()
    assert slapd.process.poll() is not None
    assert _is_gone(pid)


def test_postgres_select_and_create_table(postgres: PostgresServer) -> None:
    assert postgres.url.startswith("postgresql+psycopg2://")
    engine = sa.create_engine(postgres.url)
    try:
        with engine.begin() as conn:
            assert conn.execute(sa.text("select 1")).scalar_one() == 1
            conn.execute(sa.text("create table t (id int primary key, name text)"))
            conn.execute(sa.text("insert into t values (1, 'lake')"))
        with engine.connect() as conn:
            assert conn.execute(sa.text("select name from t")).scalar_one() == "lake"
    finally:
        engine.dispose()

    pid, root = postgres.process.pid, postgres.root
    postgres.stop()
    assert postgres.process.poll() is not None
    assert _is_gone(pid)
    assert not root.exists()
