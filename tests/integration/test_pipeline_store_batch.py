"""The batched answer writes (first-answer INSERTs, CASE UPDATEs for retries) against a real MariaDB."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC

import pytest

from sytq.storage import STATUS_SUCCEEDED, LLMOutcome, NewTask, TaskStore, upgrade, utcnow
from sytq.storage.mysql_literals import insert_statements
from tests.harness.services import MariaDBServer

pytestmark = pytest.mark.slow  # end to end: seconds each; left out of `make unit`


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
        started = await asyncio.gather(
            *(
                store.begin_attempt(
                    NewTask(task_id, "llm:chat", "default", "m", messages, callback_url=cb), 1
                )
                for task_id, cb in zip(ids, callbacks, strict=True)
            )
        )
        stored = await asyncio.gather(
            *(store.mark_succeeded(record, _outcome(i, 5000)) for i, record in enumerate(started))
        )
        assert [r.status for r in stored] == [STATUS_SUCCEEDED] * len(ids)
        for i, task_id in enumerate(ids):
            row = await store.get(task_id)
            assert row is not None
            expected = _outcome(i, 5000)
            assert (row.status, row.content, row.reasoning_content) == (
                STATUS_SUCCEEDED,
                expected.content,
                expected.reasoning_content,
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


async def test_first_answers_are_inserted_whole_and_a_stored_answer_wins(
    mariadb_server: MariaDBServer,
) -> None:
    """The first delivery's single write: literal multi-row INSERTs (split by size) that keep every
    value exact, and a row that exists already (an earlier delivery) is answered, not duplicated."""
    url = mariadb_server.create_database(f"first_{uuid.uuid4().hex[:8]}")
    await asyncio.to_thread(upgrade, url)
    store = TaskStore.from_url(url, threads=4, retry_for_seconds=5)
    try:
        ids = [f"f-{uuid.uuid4()}" for _ in range(300)]
        tricky = 'it\'s \\ "q" %s %% \n\t 😀 答案 \x00 end'
        news = [
            NewTask(
                task_id,
                "llm:chat",
                "default",
                "m",
                [{"role": "user", "content": f"{tricky} {i}"}],
                {"temperature": 0.5} if i % 2 else {},
                {"k": [i, None, True]},
                client_id=None if i % 3 else "client",
                callback_url=f"https://example.com/{i}" if i % 4 == 0 else None,
            )
            for i, task_id in enumerate(ids)
        ]
        # One id already has a row holding an answer, another a failed attempt.
        answered, failed = news[7], news[8]
        earlier = await store.begin_attempt(answered, 1)
        await store.mark_succeeded(earlier, _outcome(7777, 10))
        await store.begin_attempt(failed, 1)
        await store.mark_failed(failed.task_id, "HTTP 503", final=False)

        started = utcnow()
        stored = await asyncio.gather(
            *(
                store.store_first_answer(new, _outcome(i, 5000), 2, started_at=started)
                for i, new in enumerate(news)
            )
        )
        assert stored[7].content == _outcome(7777, 10).content  # the stored answer wins
        for i, new in enumerate(news):
            row = await store.get(new.task_id)
            assert row is not None
            expected = _outcome(7777 if i == 7 else i, 10 if i == 7 else 5000)
            assert (row.status, row.content, row.reasoning_content, row.usage) == (
                STATUS_SUCCEEDED,
                expected.content,
                expected.reasoning_content,
                expected.usage,
            )
            assert row == stored[i] or i == 8  # what the caller got is what is stored
            if i in (7, 8):
                continue
            assert row.attempts == 2 and row.metadata == {"k": [i, None, True]}
            assert row.callback_url == new.callback_url
            assert row.callback_status == ("pending" if new.callback_url else None)
            assert row.started_at == started.replace(tzinfo=UTC)
        # The failed attempt's row now holds the answer (one row, no duplicate).
        row8 = await store.get(failed.task_id)
        assert row8 is not None and row8.status == STATUS_SUCCEEDED and row8.error is None
    finally:
        await store.close()


def test_insert_statements_split_near_the_size_limit() -> None:
    rows = [["x" * 300, i] for i in range(10)]
    statements = list(insert_statements("`t`", ["`a`", "`b`"], rows, lambda s: f"'{s}'", max_bytes=1000))
    assert len(statements) == 4  # three ~310-byte rows per statement
    assert all(len(s) < 1100 for s in statements)
    assert sum(s.count("'x") for s in statements) == 10
