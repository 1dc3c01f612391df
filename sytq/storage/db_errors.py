"""Database errors sorted into outages to wait out (transient) and faults of the data itself (permanent).

Transient: the server is away or busy (lost connection, restart, failover, lock timeout, deadlock).
Waiting helps, so storage calls retry them for a while. Permanent: the statement can never succeed
as written (missing table or database, unknown column, a value the column refuses in strict mode,
duplicate key, syntax, a statement larger than the server's max_allowed_packet): retrying only
repeats the failure, so the task fails at once.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from sqlalchemy.exc import (
    DataError,
    DBAPIError,
    IntegrityError,
    NoSuchTableError,
    OperationalError,
    ProgrammingError,
)

# MySQL / MariaDB server and client error numbers, grouped by meaning.
# fmt: off
TRANSIENT_MYSQL_CODES = frozenset({
    1040,  # too many connections
    1042, 1043,  # can't get host name, bad handshake
    1044, 1045,  # access denied (credentials or grants being fixed: an outage for every task alike)
    1053,  # server shutdown in progress
    1129, 1130,  # host blocked / not allowed
    1152, 1154, 1155, 1156, 1157, 1158, 1159, 1160, 1161,  # network read/write errors, aborted
    1203, 1226,  # user connection / resource limits
    1205, 1213,  # lock wait timeout, deadlock: the transaction is worth running again
    1290, 1792, 1836,  # read-only server / transaction (failover in progress)
    1317,  # query interrupted
    1927,  # connection killed (MariaDB)
    2002, 2003, 2005, 2006, 2013, 2014, 2026, 2055,  # client: can't connect, gone away, lost, SSL
    3024,  # max_execution_time exceeded
    4031,  # disconnected for inactivity (MySQL 8)
})
PERMANENT_MYSQL_CODES = frozenset({
    1048,  # column cannot be null
    1049,  # unknown database
    1051, 1109, 1146,  # unknown / missing table
    1054,  # unknown column
    1062, 1451, 1452, 1557, 1586,  # duplicate key, foreign key
    1064, 1149,  # syntax
    1136,  # column count
    1138,  # invalid use of NULL
    1153,  # packet bigger than max_allowed_packet: the statement never fits (see packet_limit)
    1264, 1690,  # out of range
    1265,  # data truncated
    1267, 1300,  # collation mix, invalid character string
    1292, 1366, 1367, 1411,  # incorrect value for the column's type (strict mode)
    1364,  # field has no default
    1406,  # data too long
    3140, 4038,  # invalid JSON
    3819, 4025,  # CHECK constraint violated (MySQL, MariaDB)
})
# fmt: on

# SQLite result codes (primary part of sqlite3.Error.sqlite_errorcode).
# SQLITE_ERROR (no such table/column, syntax), TOOBIG, CONSTRAINT, MISMATCH, RANGE.
_SQLITE_ERROR = 1
PERMANENT_SQLITE_CODES = frozenset({_SQLITE_ERROR, 18, 19, 20, 25})


class StatementTooLarge(OperationalError):
    """A statement larger than the server's max_allowed_packet (its connection was closed for it)."""

    def __init__(
        self, statement: str | None, params: Any, orig: BaseException, size: int, limit: int
    ) -> None:
        super().__init__(statement, params, orig)
        self.size = size
        self.limit = limit


def mysql_error_code(exc: BaseException) -> int | None:
    """The MySQL/MariaDB error number behind ``exc`` (PyMySQL and mysqlclient put it first in args)."""
    orig = exc.orig if isinstance(exc, DBAPIError) else exc
    args = getattr(orig, "args", ())
    if isinstance(orig, sqlite3.Error) or not args or not isinstance(args[0], int):
        return None
    return args[0]


def _sqlite_code(exc: BaseException) -> int | None:
    orig = exc.orig if isinstance(exc, DBAPIError) else exc
    if not isinstance(orig, sqlite3.Error):
        return None
    code = getattr(orig, "sqlite_errorcode", None)
    return code & 0xFF if isinstance(code, int) else _SQLITE_ERROR


def is_transient(exc: BaseException) -> bool:
    """A connection-level failure worth waiting out; every other database error is permanent."""
    if isinstance(exc, StatementTooLarge):
        return False
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    code = mysql_error_code(exc)
    if code is not None:
        if code in TRANSIENT_MYSQL_CODES:
            return True
        if code in PERMANENT_MYSQL_CODES:
            return False
    sqlite_code = _sqlite_code(exc)
    if sqlite_code is not None:
        return sqlite_code not in PERMANENT_SQLITE_CODES  # busy, locked, I/O, can't open, full
    if isinstance(exc, (IntegrityError, DataError, ProgrammingError, NoSuchTableError)):
        return False
    # Unknown server errors: keep the old behaviour of waiting them out rather than failing work.
    return isinstance(exc, DBAPIError)


def is_permanent(exc: BaseException) -> bool:
    """The statement cannot succeed by retrying it (the data, the table or the schema is at fault)."""
    return not is_transient(exc)


def describe(exc: BaseException) -> str:
    """A one-line message for logs, task errors and ``failed_info``: the server's own words and number."""
    if isinstance(exc, StatementTooLarge):
        return (
            f"database error 1153: a statement of {exc.size} bytes is larger than the server's"
            f" max_allowed_packet ({exc.limit} bytes)"
        )
    orig = exc.orig if isinstance(exc, DBAPIError) else exc
    code = mysql_error_code(exc)
    if code is not None:
        args: tuple[object, ...] = getattr(orig, "args", ())
        text = str(args[1]) if len(args) > 1 else str(orig)
        return f"database error {code}: {text}"
    return f"database error: {orig}"
