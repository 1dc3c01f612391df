"""Record mode (``llm:process``): the caller's own table, read and updated the way the Go original did.

Only tables on the configured allowlist are touched. Columns used: ``sys_message``, ``user_message``,
``callback_url`` (read); ``status``, ``report``, ``failed_times``, ``failed_info``,
``current_task_node`` (written). The table is described, never reflected or created here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session

from sytq.storage.engine import create_engine
from sytq.storage.runner import DBRunner

# Values written to current_task_node: which step the record is at.
NODE_LLM = "llm_call"
NODE_DONE = "done"
NODE_FAILED = "failed"


class RecordTableNotAllowed(ValueError):
    """The table is not on SYTQ_RECORD_TABLES."""


def record_table(name: str) -> sa.Table:
    """The columns record mode uses, on a throwaway MetaData (SQLAlchemy quotes the name)."""
    return sa.Table(
        name,
        sa.MetaData(),
        sa.Column("id", sa.BigInteger, primary_key=True),
        sa.Column("sys_message", sa.Text),
        sa.Column("user_message", sa.Text),
        sa.Column("callback_url", sa.String(1024)),
        sa.Column("status", sa.String(32)),
        sa.Column("report", sa.Text),
        sa.Column("failed_times", sa.Integer),
        sa.Column("failed_info", sa.Text),
        sa.Column("current_task_node", sa.String(64)),
    )


@dataclass(frozen=True)
class Record:
    table: str
    id: int
    sys_message: str | None
    user_message: str | None
    callback_url: str | None
    status: str | None
    failed_times: int


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

    def _table(self, name: str) -> sa.Table:
        table = self._tables.get(name)
        if table is None:
            allowed = ", ".join(sorted(self._tables)) or "none"
            raise RecordTableNotAllowed(f"table {name!r} is not allowed for llm:process (allowed: {allowed})")
        return table

    async def fetch(self, table_name: str, record_id: int) -> Record | None:
        table = self._table(table_name)

        def _fetch(session: Session) -> Record | None:
            c = table.c
            row = session.execute(
                sa.select(c.sys_message, c.user_message, c.callback_url, c.status, c.failed_times).where(
                    c.id == record_id
                )
            ).one_or_none()
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
            )

        return await self._db.run(_fetch)

    async def _update(self, table_name: str, record_id: int, **values: object) -> None:
        table = self._table(table_name)
        statement = sa.update(table).where(table.c.id == record_id).values(**values)
        await self._db.run(lambda session: session.execute(statement))

    async def mark_processing(self, table_name: str, record_id: int, status: str) -> None:
        await self._update(table_name, record_id, status=status, current_task_node=NODE_LLM)

    async def mark_done(self, table_name: str, record_id: int, status: str, report: str) -> None:
        await self._update(table_name, record_id, status=status, report=report, current_task_node=NODE_DONE)

    async def mark_failed(self, table_name: str, record_id: int, status: str | None, info: str) -> None:
        """Count a failed attempt; ``status`` is set only when the task gives up (final failure)."""
        table = self._table(table_name)
        values: dict[str, object] = {
            "failed_times": sa.func.coalesce(table.c.failed_times, 0) + 1,
            "failed_info": info[:65_000],
        }
        if status is not None:
            values.update(status=status, current_task_node=NODE_FAILED)
        await self._update(table_name, record_id, **values)
