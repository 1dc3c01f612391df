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


SMALL_PACKET = 1_048_576  # MariaDB's max_allowed_packet for this test's connections (default 16 MiB)


async def _migrated_store(mariadb_server: MariaDBServer) -> TaskStore:
    if not mariadb_server.running:
        mariadb_server.start()
    url = mariadb_server.create_database(f"refuse_{uuid.uuid4().hex[:8]}")
    await asyncio.to_thread(upgrade, url)
    return TaskStore.from_url(url, threads=4, retry_for_seconds=120)


@pytest.fixture
async def store(mariadb_server: MariaDBServer) -> AsyncIterator[TaskStore]:
    store = await _migrated_store(mariadb_server)
    yield store
    await store.close()


@pytest.fixture
async def small_packet_store(mariadb_server: MariaDBServer) -> AsyncIterator[TaskStore]:
    """A store whose connections were opened under a 1 MiB max_allowed_packet (restored after)."""
    if not mariadb_server.running:
        mariadb_server.start()
    before = mariadb_server.fetch_one("SELECT @@GLOBAL.max_allowed_packet AS v", "mysql")
    assert before is not None
    mariadb_server.execute(f"SET GLOBAL max_allowed_packet = {SMALL_PACKET}")
    try:
        store = await _migrated_store(mariadb_server)
        yield store
        await store.close()
    finally:
        mariadb_server.execute(f"SET GLOBAL max_allowed_packet = {before['v']}")


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


async def test_a_row_bigger_than_max_allowed_packet_fails_alone(small_packet_store: TaskStore) -> None:
    # The server closes the connection on such a statement (the client sees "lost connection"): it
    # must not be waited out as an outage (120 s here), and its batch neighbours must be written.
    store = small_packet_store
    good = [_task({"i": i}) for i in range(30)]
    huge = _task({"huge": True})
    tasks = [*good[:15], huge, *good[15:]]

    def outcome(task: NewTask) -> LLMOutcome:
        content = "x" * (SMALL_PACKET + 100_000) if task is huge else f"answer {task.task_id}"
        return LLMOutcome(content, None, "stop", {"total_tokens": 3}, 10)

    started = time.monotonic()
    results = await _settle([store.store_first_answer(t, outcome(t), 1, started_at=utcnow()) for t in tasks])
    assert time.monotonic() - started < 15
    refused = results[15]
    assert isinstance(refused, RowRefusedError) and huge.task_id in str(refused)
    assert "database error 1153" in str(refused) and f"max_allowed_packet ({SMALL_PACKET} bytes)" in str(
        refused
    )
    assert await store.get(huge.task_id) is None
    for task, result in zip(good, results[:15] + results[16:], strict=True):
        row = await store.get(task.task_id)
        assert not isinstance(result, BaseException), result
        assert row is not None and row.status == STATUS_SUCCEEDED and row.content == f"answer {task.task_id}"
    # The refused task can still be failed, with the reason on its row, on the same store.
    await store.begin_attempt(huge, 1)
    failed = await store.mark_failed(huge.task_id, str(refused), final=True)
    assert failed.status == STATUS_FAILED and "max_allowed_packet" in (failed.error or "")
