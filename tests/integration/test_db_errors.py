"""sytq.storage.db_errors sorts real MariaDB (strict mode) and SQLite errors into transient and permanent."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError

from sytq.storage.db_errors import describe, is_permanent, is_transient, mysql_error_code
from tests.harness.services import MariaDBServer

TABLE = "CREATE TABLE t (id BIGINT PRIMARY KEY, n INT DEFAULT 0, s VARCHAR(5), j JSON)"


def _error(engine: sa.Engine, sql: str) -> DBAPIError:
    with pytest.raises(DBAPIError) as info, engine.begin() as conn:
        conn.execute(sa.text(sql))
    return info.value


@pytest.fixture
def mariadb_engine(mariadb_server: MariaDBServer) -> sa.Engine:
    if not mariadb_server.running:
        mariadb_server.start()
    url = mariadb_server.create_database(f"err_{uuid.uuid4().hex[:10]}")
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text(TABLE))
        conn.execute(sa.text("INSERT INTO t (id) VALUES (1)"))
    return engine


@pytest.mark.parametrize(
    ("sql", "code"),
    [
        ("SELECT * FROM missing_table", 1146),
        ("SELECT nope FROM t", 1054),
        ("UPDATE t SET n = 'llm_call' WHERE id = 1", 1366),
        ("UPDATE t SET s = 'far too long' WHERE id = 1", 1406),
        ("UPDATE t SET j = '{not json' WHERE id = 1", 4025),
        ("INSERT INTO t (id) VALUES (1)", 1062),
    ],
)
def test_mariadb_data_and_schema_errors_are_permanent(mariadb_engine: sa.Engine, sql: str, code: int) -> None:
    exc = _error(mariadb_engine, sql)
    assert mysql_error_code(exc) == code
    assert is_permanent(exc) and not is_transient(exc)
    assert describe(exc).startswith(f"database error {code}: ")


def test_mariadb_runs_in_strict_mode(mariadb_engine: sa.Engine) -> None:
    with mariadb_engine.connect() as conn:
        assert "STRICT_TRANS_TABLES" in str(conn.execute(sa.text("SELECT @@SESSION.sql_mode")).scalar())


def test_lost_connection_is_transient(mariadb_server: MariaDBServer) -> None:
    engine = sa.create_engine(mariadb_server.url.replace(f":{mariadb_server.port}/", ":1/"))
    exc = _error(engine, "SELECT 1")
    assert mysql_error_code(exc) == 2003
    assert is_transient(exc)


@pytest.mark.parametrize(
    "sql",
    ["SELECT * FROM missing_table", "SELECT nope FROM t", "INSERT INTO t (id) VALUES (1)"],
)
def test_sqlite_schema_errors_are_permanent(tmp_path: Path, sql: str) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'e.db'}")
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE t (id INTEGER PRIMARY KEY, n INT)"))
        conn.execute(sa.text("INSERT INTO t (id) VALUES (1)"))
    exc = _error(engine, sql)
    assert is_permanent(exc)
    assert describe(exc).startswith("database error: ")


def test_sqlite_locked_database_is_transient(tmp_path: Path) -> None:
    path = tmp_path / "locked.db"
    holder = sa.create_engine(f"sqlite:///{path}")
    waiter = sa.create_engine(f"sqlite:///{path}", connect_args={"timeout": 0})
    with holder.connect() as conn:
        conn.execute(sa.text("CREATE TABLE t (id INTEGER)"))
        conn.commit()
        conn.exec_driver_sql("BEGIN EXCLUSIVE")
        exc = _error(waiter, "SELECT * FROM t")
        conn.rollback()
    assert is_transient(exc)


def test_packet_bigger_than_max_allowed_packet_is_permanent() -> None:
    import pymysql

    # When the client does read the server's own 1153 (small statements racing the close).
    server_said = pymysql.err.OperationalError(1153, "Got a packet bigger than 'max_allowed_packet' bytes")
    refused = sa.exc.OperationalError("INSERT …", None, server_said)
    assert is_permanent(refused) and describe(refused).startswith("database error 1153")
