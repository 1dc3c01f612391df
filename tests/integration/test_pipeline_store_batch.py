"""The batched answer write (one CASE UPDATE per batch) against a real MariaDB."""

from __future__ import annotations

import asyncio
import uuid

from sytq.storage import STATUS_SUCCEEDED, LLMOutcome, NewTask, TaskStore, upgrade
from tests.harness.services import MariaDBServer


def _outcome(index: int, size: int) -> LLMOutcome:
    content = f"答案 {index} 'quoted' %s \\ " + "x" * size
    reasoning = None if index % 2 else f"reasoning {index}"
    usage = {"total_tokens": index}
    return LLMOutcome(content, reasoning, "stop", usage, 100 + index, model=f"m-{index % 3}")


async def test_concurrent_answers_each_land_on_their_own_row(mariadb_server: MariaDBServer) -> None:
    url = mariadb_server.create_database(f"batch_{uuid.uuid4().hex[:8]}")
    await asyncio.to_thread(upgrade, url)
    store = TaskStore.from_url(url, threads=4, retry_for_seconds=5)
    try:
        # 300 tasks with ~1.5 MB of answers: more than one batch and more than one statement.
        ids = [f"t-{uuid.uuid4()}" for _ in range(300)]
        callbacks = [f"https://example.com/{i}" if i % 4 == 0 else None for i in range(len(ids))]
        messages = [{"role": "user", "content": "q"}]
        started = await asyncio.gather(*(
            store.begin_attempt(NewTask(task_id, "llm:chat", "default", "m", messages, callback_url=cb), 1)
            for task_id, cb in zip(ids, callbacks, strict=True)
        ))
        stored = await asyncio.gather(*(
            store.mark_succeeded(record, _outcome(i, 5000)) for i, record in enumerate(started)
        ))
        assert [r.status for r in stored] == [STATUS_SUCCEEDED] * len(ids)
        for i, task_id in enumerate(ids):
            row = await store.get(task_id)
            assert row is not None
            expected = _outcome(i, 5000)
            assert (row.status, row.content, row.reasoning_content) == (
                STATUS_SUCCEEDED, expected.content, expected.reasoning_content
            )
            assert (row.usage, row.llm_latency_ms, row.model) == ({"total_tokens": i}, 100 + i, f"m-{i % 3}")
            assert row.callback_status == ("pending" if callbacks[i] else None)
            assert row.finished_at is not None

        # A second answer for a task already answered (a re-delivery) keeps the first one.
        again = await store.mark_succeeded(started[1], _outcome(999, 10))
        assert again.content == _outcome(1, 5000).content
        row = await store.get(ids[1])
        assert row is not None and row.content == _outcome(1, 5000).content
    finally:
        await store.close()
