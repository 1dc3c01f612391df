"""Rows of the Go original's ``valuation_records`` table in MariaDB, written and read as its PHP app would."""

from __future__ import annotations

import itertools
import os
from typing import Any

import pymysql
import pymysql.cursors

from tests.harness.services import MariaDBServer

# The original's ids are the PHP app's own (no AUTO_INCREMENT): unique per test process.
_ids = itertools.count(os.getpid() * 1000 + 1)


def _connect(mariadb: MariaDBServer, database: str) -> pymysql.Connection[Any]:
    return pymysql.connect(
        host="127.0.0.1",
        port=mariadb.port,
        user="root",
        database=database,
        cursorclass=pymysql.cursors.DictCursor,
        autocommit=True,
    )


def insert_record(
    mariadb: MariaDBServer, database: str, *, table: str = "valuation_records", **columns: Any
) -> int:
    """A new row (fresh id unless given) with the given columns; returns its id."""
    columns.setdefault("id", next(_ids))
    names = ", ".join(f"`{name}`" for name in columns)
    marks = ", ".join(["%s"] * len(columns))
    conn = _connect(mariadb, database)
    try:
        with conn.cursor() as cur:
            cur.execute(f"INSERT INTO `{table}` ({names}) VALUES ({marks})", tuple(columns.values()))
    finally:
        conn.close()
    return int(columns["id"])


def read_record(
    mariadb: MariaDBServer, database: str, record_id: int, table: str = "valuation_records"
) -> dict[str, Any]:
    conn = _connect(mariadb, database)
    try:
        with conn.cursor() as cur:
            cur.execute(f"SELECT * FROM `{table}` WHERE id = %s", (record_id,))
            row = cur.fetchone()
    finally:
        conn.close()
    assert row is not None, f"{table} has no row {record_id}"
    return dict(row)
