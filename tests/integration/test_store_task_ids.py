"""Task ids that differ only in case (or a trailing space) are different tasks on MySQL/MariaDB too,
as they are in Redis: each gets its own row."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from sytq.storage import LLMOutcome, NewTask, TaskStore, upgrade, utcnow
from tests.harness.services import MariaDBServer

pytestmark = pytest.mark.slow  # end to end: seconds each; left out of `make unit`


async def test_case_only_different_ids_get_their_own_rows(mariadb_server: MariaDBServer) -> None:
    if not mariadb_server.running:
        mariadb_server.start()
    url = mariadb_server.create_database(f"ids_{uuid.uuid4().hex[:8]}")
    await asyncio.to_thread(upgrade, url)
    store = TaskStore.from_url(url, threads=2, retry_for_seconds=5)
    try:
        base = f"Order-{uuid.uuid4().hex[:8]}"
        ids = [base, base.lower(), base.upper(), base + " "]
        for task_id in ids:
            task = NewTask(task_id, "llm:chat", "default", "m", [{"role": "user", "content": task_id}])
            outcome = LLMOutcome(f"answer for {task_id!r}", None, "stop", None, 5)
            stored = await store.store_first_answer(task, outcome, 1, started_at=utcnow())
            assert stored.content == outcome.content  # not another id's stored answer
        for task_id in ids:
            row = await store.get(task_id)
            assert row is not None and row.task_id == task_id and row.content == f"answer for {task_id!r}"
            assert await store.exists(task_id)
        assert not await store.exists(base.swapcase())
    finally:
        await store.close()
