"""Record mode (``llm:process``): the caller's own table, read and updated the way the Go original did.

Only tables on the configured allowlist are touched, with the Go original's column types (its
``valuation_records`` DDL): ``sys_message``, ``user_message``, ``callback_url`` are read;
``status``, ``report``, ``failed_times``, ``failed_info`` and ``current_task_node`` (an INT the
original advances by one on success) are written. The table is described, never reflected or created.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.orm import Session

from sytq import metrics_go
from sytq.storage.engine import create_engine
from sytq.storage.runner import DBRunner

Result = TypeVar("Result")

# failed_info is TEXT in the original's DDL: 65,535 bytes. Kept well under, whole characters only.
FAILED_INFO_MAX_BYTES = 60_000


class RecordTableNotAllowed(ValueError):
    """The table is not on SYTQ_RECORD_TABLES."""


def record_table(name: str) -> sa.Table:
    """The columns record mode uses, typed as in the original's DDL, on a throwaway MetaData."""
    return sa.Table(
        name,
        sa.MetaData(),
        sa.Column("id", sa.BigInteger, primary_key=True),
        sa.Column("status", sa.String(50)),
        sa.Column("user_message", sa.Text),
        sa.Column("sys_message", sa.Text),
        sa.Column("report", sa.Text),
        sa.Column("failed_times", sa.Integer),
        sa.Column("failed_info", sa.Text),
        sa.Column("current_task_node", sa.Integer),
        sa.Column("callback_url", sa.String(255)),
    )


def clip_failed_info(info: str) -> str:
    return info.encode()[:FAILED_INFO_MAX_BYTES].decode(errors="ignore")


@dataclass(frozen=True)
class Record:
    table: str
    id: int
    sys_message: str | None
    user_message: str | None
    callback_url: str | None
    status: str | None
    failed_times: int
    current_task_node: int


class RecordStore:
    def __init__(
        self, engine: sa.Engine, allowlist: Iterable[str], *, retry_for_seconds: float = 120.0
    ) -> None:
        self._db = DBRunner(engine, threads=4, retry_for_seconds=retry_for_seconds)
        self._tables = {name: record_table(name) for name in allowlist}

    @classmethod
    def from_url(cls, url: str, allowlist: Iterable[str], *, retry_for_seconds: float = 120.0) -> RecordStore:
        return cls(create_engine(url, pool_size=4), allowlist, retry_for_seconds=retry_for_seconds)

    async def close(self) -> None:
        await self._db.close()

    def check_table(self, name: str) -> None:
        """Raise RecordTableNotAllowed unless ``name`` is on the allowlist."""
        self._table(name)

    def _table(self, name: str) -> sa.Table:
        table = self._tables.get(name)
        if table is None:
            allowed = ", ".join(sorted(self._tables)) or "none"
            raise RecordTableNotAllowed(f"table {name!r} is not allowed for llm:process (allowed: {allowed})")
        return table

    async def fetch(self, table_name: str, record_id: int) -> Record | None:
        table = self._table(table_name)
        c = table.c
        query = sa.select(
            c.sys_message, c.user_message, c.callback_url, c.status, c.failed_times, c.current_task_node
        ).where(c.id == record_id)

        def _fetch(session: Session) -> Record | None:
            row = session.execute(query).one_or_none()
            if row is None:
                return None
            return Record(
                table=table_name,
                id=record_id,
                sys_message=row.sys_message,
                user_message=row.user_message,
                callback_url=row.callback_url or None,
                status=row.status,
                failed_times=int(row.failed_times or 0),
                current_task_node=int(row.current_task_node or 0),
            )

        return await self._measured("get_record", self._db.run(_fetch))

    async def read_row(self, table_name: str, record_id: int) -> dict[str, Any] | None:
        """Every column of one row, as the table has them (for ``sytq records get``)."""
        table = self._table(table_name)
        query: sa.Select[Any] = (
            sa.select(sa.literal_column("*")).select_from(table).where(table.c.id == record_id)
        )

        def _read(session: Session) -> dict[str, Any] | None:
            row = session.execute(query).one_or_none()
            return None if row is None else dict(row._mapping)

        return await self._db.run(_read)

    @staticmethod
    async def _measured(operation: str, query: Awaitable[Result]) -> Result:
        """``query``'s result, counted in the Go original's database metrics under its operation name."""
        started = time.monotonic()
        try:
            result = await query
        except BaseException:
            metrics_go.database_query(operation, False, started)
            raise
        metrics_go.database_query(operation, True, started)
        return result

    async def _update(self, operation: str, statement: sa.Update) -> int:
        """Rows the statement matched."""

        def _run(session: Session) -> int:
            result: sa.CursorResult[Any] = session.execute(statement)  # type: ignore[assignment]
            return result.rowcount

        return await self._measured(operation, self._db.run(_run))

    async def mark_processing(self, table_name: str, record_id: int, status: str) -> None:
        """An attempt starts: only ``status`` changes, as in the original."""
        table = self._table(table_name)
        statement = sa.update(table).where(table.c.id == record_id).values(status=status)
        await self._update("update_status", statement)

    async def mark_done(self, table_name: str, record_id: int, status: str, report: str) -> bool:
        """Store the answer and advance ``current_task_node`` by one; False when the row already
        holds this very answer (a re-delivered task: the node is advanced once, not twice)."""
        table = self._table(table_name)
        c = table.c
        already = sa.and_(c.status.is_not_distinct_from(status), c.report.is_not_distinct_from(report))
        statement = (
            sa.update(table)
            .where(c.id == record_id, sa.not_(already))
            .values(
                status=status, report=report, current_task_node=sa.func.coalesce(c.current_task_node, 0) + 1
            )
        )
        return await self._update("update_record", statement) > 0

    async def mark_failed(self, table_name: str, record_id: int, status: str | None, info: str) -> None:
        """Count a failed attempt and keep its error; ``status`` is written unless None."""
        table = self._table(table_name)
        values: dict[str, object] = {
            "failed_times": sa.func.coalesce(table.c.failed_times, 0) + 1,
            "failed_info": clip_failed_info(info),
        }
        if status is not None:
            values["status"] = status
        await self._update("update_record", sa.update(table).where(table.c.id == record_id).values(**values))
