"""A row the database refuses fails alone and at once; its batch neighbours are written exactly once.

Real MariaDB: its JSON columns CHECK json_valid(), which refuses NaN and documents nested 32 deep.
The store's outage wait is left at 120 s, so a refusal mistaken for an outage would stall the test.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from sytq.storage import (
    STATUS_FAILED,
    STATUS_SUCCEEDED,
    LLMOutcome,
    NewTask,
    RowRefusedError,
    TaskStore,
    upgrade,
)
from sytq.storage.store import utcnow
from tests.harness.services import MariaDBServer

MESSAGES = [{"role": "user", "content": "q"}]
POISONS: list[dict[str, Any]] = [
    {"x": float("nan")},
    {"deep": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]},
]


@pytest.fixture
async def store(mariadb_server: MariaDBServer) -> AsyncIterator[TaskStore]:
    if not mariadb_server.running:
        mariadb_server.start()
    url = mariadb_server.create_database(f"refuse_{uuid.uuid4().hex[:8]}")
    await asyncio.to_thread(upgrade, url)
    store = TaskStore.from_url(url, threads=4, retry_for_seconds=120)
    yield store
    await store.close()


def _task(metadata: dict[str, Any]) -> NewTask:
    return NewTask(f"t-{uuid.uuid4()}", "llm:chat", "default", "m", MESSAGES, metadata=metadata)


def _outcome(usage: dict[str, Any] | None = None) -> LLMOutcome:
    return LLMOutcome("answer", None, "stop", usage or {"total_tokens": 3}, 10)


async def _settle(calls: list[Any]) -> list[Any]:
    return await asyncio.gather(*calls, return_exceptions=True)


async def test_first_answers_batch_with_poison_rows(store: TaskStore) -> None:
    good = [_task({"i": i}) for i in range(40)]
    poison = [_task(m) for m in POISONS]
    tasks = good[:20] + poison[:1] + good[20:] + poison[1:]
    started = time.monotonic()
    results = await _settle([store.store_first_answer(t, _outcome(), 1, started_at=utcnow()) for t in tasks])
    assert time.monotonic() - started < 15  # refused at once, not waited out as an outage
    for task, result in zip(tasks, results, strict=True):
        if task in poison:
            assert isinstance(result, RowRefusedError) and task.task_id in str(result)
            assert "database error 4025: CONSTRAINT" in str(result)
            assert await store.get(task.task_id) is None
        else:
            row = await store.get(task.task_id)
            assert row is not None and row.status == STATUS_SUCCEEDED and row.metadata == task.metadata


async def test_begin_attempt_and_answer_updates_with_poison_rows(store: TaskStore) -> None:
    good = [_task({"i": i}) for i in range(20)]
    poison = _task(POISONS[0])
    begun = await _settle([store.begin_attempt(t, 1) for t in [*good[:10], poison, *good[10:]]])
    assert isinstance(begun[10], RowRefusedError)
    records = [r for r in begun if not isinstance(r, BaseException)]
    assert len(records) == 20
    # One answer the database refuses (a provider's usage with NaN): its neighbours are stored.
    usages = [{"n": float("nan")} if i == 5 else {"n": i} for i in range(20)]
    answered = await _settle(
        [store.mark_succeeded(r, _outcome(u)) for r, u in zip(records, usages, strict=True)]
    )
    assert isinstance(answered[5], RowRefusedError)
    for i, record in enumerate(records):
        row = await store.get(record.task_id)
        assert row is not None
        if i == 5:
            assert row.status == "running" and row.content is None
        else:
            assert row.status == STATUS_SUCCEEDED and row.usage == {"n": i}
    # The refused task can still be failed with its error on its row.
    failed = await store.mark_failed(records[5].task_id, str(answered[5]), final=True)
    assert failed.status == STATUS_FAILED and "refused" in (failed.error or "")


async def test_long_multibyte_error_text_is_stored(store: TaskStore) -> None:
    task = _task({})
    await store.begin_attempt(task, 1)
    record = await store.mark_failed(task.task_id, "错" * 70_000, final=True)
    row = await store.get(task.task_id)
    assert row is not None and row.status == STATUS_FAILED and row.error == record.error
    assert row.error is not None and row.error.startswith("错" * 1000) and len(row.error.encode()) < 65_536
