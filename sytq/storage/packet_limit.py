"""Statements larger than the MySQL/MariaDB server's ``max_allowed_packet``, told apart from outages.

The server refuses such a statement by closing the connection; the client rarely reads its error
1153 before the reset, so the failure arrives as a lost connection (2006 or 2013), which is waited out
as an outage. It can never succeed: after a lost connection, a statement whose own size reaches the
connection's limit is raised as ``StatementTooLarge`` (permanent), so a row too big for the server
fails its task alone and its batch neighbours are written.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import ExceptionContext

from sytq.storage.db_errors import StatementTooLarge, mysql_error_code

_LIMIT_KEY = "sytq_max_allowed_packet"
# How the refusal reaches the client: its own error, or the connection gone (2006, 2013).
_REFUSAL_CODES = frozenset({1153, 2006, 2013})


def watch_statement_sizes(engine: sa.Engine) -> None:
    """Remember each connection's max_allowed_packet and re-raise too-large statements (MySQL only)."""
    sa.event.listen(engine, "connect", _remember_limit)
    sa.event.listen(engine, "handle_error", _raise_if_too_large)


def _remember_limit(dbapi_connection: Any, record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("SELECT @@max_allowed_packet")
        row = cursor.fetchone()
    finally:
        cursor.close()
    record.info[_LIMIT_KEY] = int(row[0])


def _raise_if_too_large(context: ExceptionContext) -> None:
    # Called as the driver's error surfaces (SQLAlchemy may not have judged it a disconnect yet).
    if mysql_error_code(context.original_exception) not in _REFUSAL_CODES or context.connection is None:
        return
    limit = context.connection.info.get(_LIMIT_KEY)
    size = _largest_packet(context)
    if limit is None or size is None or size <= limit:
        return
    context.is_disconnect = True  # the server closed it: no ROLLBACK on it, the pool replaces it
    # Without the statement: its text is the oversized data itself.
    raise StatementTooLarge(None, None, context.original_exception, size, limit)


def _largest_packet(context: ExceptionContext) -> int | None:
    """Bytes of the largest packet the failed call sent: one statement, or one row of an executemany
    (the driver folds those into statements of about 1 MB; a single row is what cannot be split)."""
    execution, statement = context.execution_context, context.statement
    cursor = getattr(execution, "cursor", None)
    mogrify = getattr(cursor, "mogrify", None)
    if execution is None or mogrify is None or statement is None:
        return None
    executemany = execution.executemany
    parameters = context.parameters
    runs = list(parameters or ()) if executemany else [parameters]
    encoding = getattr(getattr(cursor, "connection", None), "encoding", None) or "utf-8"
    try:
        return max(len(mogrify(statement, run).encode(encoding, "surrogateescape")) + 1 for run in runs)
    except Exception:  # a cursor already closed, parameters it cannot render: no verdict
        return None
