"""Queries for the reconciler: rows left unfinished, callbacks left pending, which ids lack a final row."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from sytq.storage.models import (
    CALLBACK_PENDING,
    FINAL_STATUSES,
    STATUS_QUEUED,
    STATUS_RUNNING,
    LLMTaskRow,
)
from sytq.storage.store import TaskStore

_TABLE: sa.Table = LLMTaskRow.__table__  # type: ignore[assignment]
_COLUMNS = _TABLE.c


@dataclass(frozen=True)
class RowRef:
    """Where a row's task lives on the queue."""

    task_id: str
    type: str
    queue: str


class StuckRows:
    """Keyset-paged reads (by task id) over the task table, for rows older than a cut-off."""

    def __init__(self, store: TaskStore) -> None:
        self._db = store.db

    async def unfinished(self, created_before: datetime, after: str, limit: int) -> list[RowRef]:
        """Rows still queued or running that were created before ``created_before``."""
        query = (
            sa.select(_COLUMNS.task_id, _COLUMNS.type, _COLUMNS.queue)
            .where(_COLUMNS.status.in_([STATUS_QUEUED, STATUS_RUNNING]))
            .where(_COLUMNS.created_at < created_before)
        )
        return await self._page(query, after, limit)

    async def callbacks_pending(self, finished_before: datetime, after: str, limit: int) -> list[RowRef]:
        """Finished rows whose callback is still pending, finished before ``finished_before``."""
        query = (
            sa.select(_COLUMNS.task_id, _COLUMNS.type, _COLUMNS.queue)
            .where(_COLUMNS.callback_status == CALLBACK_PENDING)
            .where(_COLUMNS.finished_at < finished_before)
        )
        return await self._page(query, after, limit)

    async def without_final_row(self, task_ids: list[str]) -> set[str]:
        """The ids among ``task_ids`` that have no row, or one that is not final."""
        if not task_ids:
            return set()

        def _final(session: Session) -> set[str]:
            query = sa.select(_COLUMNS.task_id).where(
                _COLUMNS.task_id.in_(task_ids), _COLUMNS.status.in_(sorted(FINAL_STATUSES))
            )
            return set(session.scalars(query))

        return set(task_ids) - await self._db.run(_final)

    async def _page(self, query: sa.Select[tuple[str, str, str]], after: str, limit: int) -> list[RowRef]:
        page = query.where(_COLUMNS.task_id > after).order_by(_COLUMNS.task_id).limit(limit)

        def _read(session: Session) -> list[RowRef]:
            return [RowRef(row.task_id, row.type, row.queue) for row in session.execute(page)]

        return await self._db.run(_read)
