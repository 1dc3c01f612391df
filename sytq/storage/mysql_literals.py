"""Multi-row INSERT statements as literal SQL text, for MySQL/MariaDB over PyMySQL.

The worker's hot path inserts thousands of rows a second, and PyMySQL's generic escaping (a chain
of Python calls per value, plus SQLAlchemy's per-row parameter processing) was most of the database
threads' CPU. Strings still go through the driver connection's own escaping, which honours the
server's NO_BACKSLASH_ESCAPES mode; numbers, NULL, datetimes and JSON are formatted here the way
the driver formats them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any

import pydantic_core

QuoteString = Callable[[str], str]  # str -> quoted SQL literal ('...')


def sql_literal(value: Any, quote: QuoteString) -> str:
    if value is None:
        return "NULL"
    kind = type(value)
    if kind is str:
        return quote(value)
    if kind is int:
        return str(value)
    if kind is datetime:
        return f"'{value.isoformat(' ')}'"
    if kind is dict or kind is list:
        return quote(pydantic_core.to_json(value).decode())  # the Rust encoder, far cheaper than json.dumps
    if kind is bool:
        return "1" if value else "0"
    if kind is float:
        return repr(value) + "e0"
    raise TypeError(f"no SQL literal for {kind.__name__}")


def insert_statements(
    table: str,
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    quote: QuoteString,
    max_bytes: int = 1_000_000,
) -> Iterator[str]:
    """``INSERT INTO table (columns) VALUES (...), (...)`` statements holding every row once, each
    kept near ``max_bytes`` (a server refuses statements over its max_allowed_packet).
    ``table`` and ``columns`` must already be quoted identifiers."""
    head = f"INSERT INTO {table} ({','.join(columns)}) VALUES "
    chunk: list[str] = []
    size = 0
    for row in rows:
        literal = "(" + ",".join([sql_literal(value, quote) for value in row]) + ")"
        if chunk and size + len(literal) > max_bytes:
            yield head + ",".join(chunk)
            chunk, size = [], 0
        chunk.append(literal)
        size += len(literal) + 1
    if chunk:
        yield head + ",".join(chunk)
