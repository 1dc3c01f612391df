"""Every task reaches a final stored state and its callback: the reconciler, against real Redis,
MariaDB, the stub LLM, a callback receiver and (for kill -9) real worker processes."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis

from sytq.lease_lock import LeaseLock
from sytq.queue import Inspector, QueueClient, TaskState
from sytq.settings import Settings
from sytq.storage import LLMOutcome, NewTask, TaskRecord, TaskStore, utcnow
from sytq.tasks import LLMChatPayload
from tests.harness.llm_fixtures import (
    CallbackReceiver,
    PipelineEnv,
    StubLLMProcess,
    WorkerProcess,
    running_worker,
    wait_callback_state,
    wait_row,
)
from tests.harness.records import insert_record, read_record
from tests.harness.services import MariaDBServer, RedisServer
from worker import reconciler as reconciler_module
from worker.pipeline import Pipeline
from worker.reconciler import GONE, Reconciler

pytestmark = pytest.mark.slow  # end to end: seconds each; left out of `make unit`


def fast(settings: Settings, **update: Any) -> Settings:
    return settings.model_copy(
        update={"reconcile_interval_seconds": 0.3, "reconcile_grace_seconds": 0.0, **update}
    )


def payload(prompt: str, callback_url: str) -> bytes:
    chat = LLMChatPayload(
        model="deepseek-chat",
        messages=[{"role": "user", "content": prompt}],  # type: ignore[list-item]
        callback_url=callback_url,
        metadata={"order": 9},
    )
    return chat.model_dump_json().encode()


async def enqueue(redis: aioredis.Redis, prompt: str, hook: str, max_retry: int) -> str:
    task_id = f"rec-{uuid.uuid4()}"
    await QueueClient(redis).enqueue(
        "llm:chat", payload(prompt, hook), task_id=task_id, max_retry=max_retry, retention=300
    )
    return task_id


async def eventually(check: Callable[[], Awaitable[bool]], what: str, within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{what}: not within {within}s")


async def state_of(redis: aioredis.Redis, task_id: str) -> TaskState | None:
    try:
        return (await Inspector(redis).get_task("default", task_id)).state
    except Exception:
        return None


async def reconcile_until_final(
    reconciler: Reconciler, store: TaskStore, task_id: str, within: float = 20.0
) -> TaskRecord:
    """Passes until the row is final (archive times are whole seconds: the current one is not read)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        await reconciler.reconcile_once()
        record = await store.get(task_id)
        if record is not None and record.finished:
            return record
        await asyncio.sleep(0.2)
    raise AssertionError(f"task {task_id} not finished by the reconciler within {within}s")


def reconciler_for(pipeline: Pipeline, redis: aioredis.Redis) -> Reconciler:
    return Reconciler(pipeline, redis, interval=0.3, grace=0.0)


def failed_callback(receiver: CallbackReceiver, task_id: str) -> dict[str, Any]:
    [callback] = receiver.for_task(task_id)
    body: dict[str, Any] = json.loads(callback.body)
    assert body["status"] == "failed"
    return body


async def test_kill_9_on_the_last_attempt_then_lease_recovery_archives_it(
    pipeline_env: PipelineEnv,
    redis_client: aioredis.Redis,
    stub_llm: StubLLMProcess,
    callback_receiver: CallbackReceiver,
) -> None:
    tag = uuid.uuid4().hex
    stub_llm.configure(faults=[{"kind": "hang", "match": tag}])
    settings = fast(pipeline_env.settings)
    store = TaskStore.from_url(settings.effective_database_url)
    victim = WorkerProcess(settings)
    try:
        task_id = await enqueue(redis_client, f"killed {tag}", callback_receiver.url + "/hook", max_retry=0)
        await eventually(lambda: asyncio.to_thread(lambda: stub_llm.calls_for(tag) == 1), "call in flight")
        victim.kill()
        survivor = WorkerProcess(settings)  # recovers the lease (archived: no attempt left), reconciles
        try:
            record = await wait_callback_state(store, task_id, "delivered", within=60)
        finally:
            assert survivor.stop() == 0
    finally:
        victim.kill()
        await store.close()
    assert await state_of(redis_client, task_id) == TaskState.ARCHIVED
    assert record.status == "failed" and "task lease expired" in (record.error or "")
    assert record.attempts == 1  # the run the kill cut short
    body = failed_callback(callback_receiver, task_id)
    assert "task lease expired" in body["error"] and body["metadata"] == {"order": 9}
    assert stub_llm.calls_for(tag) == 1


async def cancel_second_attempt(redis: aioredis.Redis, stub_llm: StubLLMProcess, hook: str) -> str:
    """A task whose first attempt failed (its row is written, running) and whose second was
    cancelled while its provider call hung: archived, row still running."""
    tag = uuid.uuid4().hex
    stub_llm.configure(faults=[{"kind": "500", "times": 1, "match": tag}, {"kind": "hang", "match": tag}])
    task_id = await enqueue(redis, f"cancel {tag}", hook, max_retry=5)
    await eventually(lambda: asyncio.to_thread(lambda: stub_llm.calls_for(tag) == 2), "second attempt")
    await Inspector(redis).cancel_task(task_id)
    await eventually(lambda: _is(state_of(redis, task_id), TaskState.ARCHIVED), "archived after cancel")
    return task_id


async def _is(state: Awaitable[TaskState | None], expected: TaskState) -> bool:
    return await state == expected


async def test_database_error_on_the_last_attempt(
    pipeline_env: PipelineEnv,
    redis_client: aioredis.Redis,
    stub_llm: StubLLMProcess,
    callback_receiver: CallbackReceiver,
    mariadb_server: MariaDBServer,
) -> None:
    tag = uuid.uuid4().hex
    stub_llm.configure(faults=[{"kind": "400", "match": tag}], latency="1")
    settings = pipeline_env.settings.model_copy(update={"database_outage_wait_seconds": 1.0})
    async with running_worker(settings, redis_client) as pipeline:
        task_id = await enqueue(redis_client, f"db down {tag}", callback_receiver.url + "/hook", max_retry=0)
        await eventually(lambda: asyncio.to_thread(lambda: stub_llm.stats()["in_flight"] == 1), "in flight")
        mariadb_server.stop()  # the failed attempt cannot be stored: the handler raises, the task is archived
        try:
            await eventually(lambda: _is(state_of(redis_client, task_id), TaskState.ARCHIVED), "archived")
        finally:
            mariadb_server.start()
        assert await pipeline.store.get(task_id) is None
        record = await reconcile_until_final(reconciler_for(pipeline, redis_client), pipeline.store, task_id)
        assert record.status == "failed" and "Can't connect to MySQL" in (record.error or "")
        await wait_callback_state(pipeline.store, task_id, "delivered")
    assert "OperationalError" in failed_callback(callback_receiver, task_id)["error"]


async def test_cancelled_while_running_and_a_running_row_whose_task_is_gone(
    pipeline_env: PipelineEnv,
    redis_client: aioredis.Redis,
    stub_llm: StubLLMProcess,
    callback_receiver: CallbackReceiver,
) -> None:
    hook = callback_receiver.url + "/hook"
    async with running_worker(pipeline_env.settings, redis_client) as pipeline:
        cancelled = await cancel_second_attempt(redis_client, stub_llm, hook)
        gone = await cancel_second_attempt(redis_client, stub_llm, hook)
        await Inspector(redis_client).delete_task("default", gone)  # as if Redis lost it
        for task_id in (cancelled, gone):
            stuck = await pipeline.store.get(task_id)
            assert stuck is not None and stuck.status == "running"  # what the old code left behind
        reconciler = reconciler_for(pipeline, redis_client)
        record = await reconcile_until_final(reconciler, pipeline.store, cancelled)
        assert record.status == "failed" and "context canceled" in (record.error or "")
        record = await reconcile_until_final(reconciler, pipeline.store, gone)
        assert record.status == "failed" and record.error == GONE
        for task_id in (cancelled, gone):
            await wait_callback_state(pipeline.store, task_id, "delivered")
        # Nothing left to do: another pass changes nothing.
        assert not await reconciler.reconcile_once()
    assert "context canceled" in failed_callback(callback_receiver, cancelled)["error"]
    assert failed_callback(callback_receiver, gone)["error"] == GONE


async def test_pending_callbacks_are_driven_again(
    pipeline_env: PipelineEnv, redis_client: aioredis.Redis, callback_receiver: CallbackReceiver
) -> None:
    hook = callback_receiver.url + "/hook"
    async with running_worker(pipeline_env.settings, redis_client) as pipeline:
        store = pipeline.store
        # Answers stored, callbacks pending, but the callback tasks were never enqueued (Redis was away).
        ids = [f"cb-{uuid.uuid4()}" for _ in range(3)]
        for task_id in ids:
            task = NewTask(
                task_id, "llm:chat", "default", "m", [{"role": "user", "content": "q"}], callback_url=hook
            )
            outcome = LLMOutcome(f"answer {task_id}", None, "stop", {"total_tokens": 1}, 5)
            stored = await store.store_first_answer(task, outcome, 1, started_at=utcnow())
            assert stored.callback_status == "pending"
        # One whose callback task ran out of attempts while its worker died: archived, row pending.
        given_up = ids[2]
        client = QueueClient(redis_client)
        callbacks = pipeline.settings.callback_queue
        await client.enqueue(
            "callback:deliver", b"{}", queue=callbacks, task_id=f"{given_up}:cb", max_retry=0
        )
        await Inspector(redis_client).archive_task(callbacks, f"{given_up}:cb")
        reconciler = reconciler_for(pipeline, redis_client)
        counts = await reconciler.reconcile_once()
        assert (counts.callbacks_requeued, counts.callbacks_given_up) == (2, 1)
        for task_id in ids[:2]:
            await wait_callback_state(store, task_id, "delivered")
        failed = await wait_callback_state(store, given_up, "failed")
        assert "callback given up" in (failed.callback_error or "")
        assert not await reconciler.reconcile_once()
    for task_id in ids[:2]:
        [callback] = callback_receiver.for_task(task_id)
        assert json.loads(callback.body)["result"]["content"] == f"answer {task_id}"
    assert callback_receiver.for_task(given_up) == []


async def test_one_reconciler_at_a_time(redis_client: aioredis.Redis) -> None:
    first = LeaseLock(redis_client, "sytq:test:lease", ttl_seconds=0.5)
    second = LeaseLock(redis_client, "sytq:test:lease", ttl_seconds=0.5)
    assert await first.acquire() and await first.acquire()  # renewing is taking it again
    assert not await second.acquire()
    await second.release()  # not the holder: nothing happens
    assert not await second.acquire()
    await first.release()
    assert await second.acquire() and not await first.acquire()
    # A holder that stops renewing (its worker was killed) loses the lease when it runs out.
    await eventually(first.acquire, "lease taken over after it ran out", within=5)
    assert not await second.acquire()


async def test_record_mode_task_cancelled_while_running(
    pipeline_env: PipelineEnv,
    redis_client: aioredis.Redis,
    stub_llm: StubLLMProcess,
    mariadb_server: MariaDBServer,
) -> None:
    tag = uuid.uuid4().hex
    stub_llm.configure(faults=[{"kind": "hang", "match": tag}])
    db = pipeline_env.record_database
    record_id = insert_record(
        mariadb_server, db, status="待处理", user_message=f"value {tag}", failed_times=0
    )
    async with running_worker(pipeline_env.settings, redis_client) as pipeline:
        task_id = f"rec-{uuid.uuid4()}"
        body = json.dumps({"table_name": "valuation_records", "id": record_id}).encode()
        await QueueClient(redis_client).enqueue("llm:process", body, task_id=task_id, max_retry=0)
        await eventually(lambda: asyncio.to_thread(lambda: stub_llm.calls_for(tag) == 1), "call in flight")
        assert read_record(mariadb_server, db, record_id)["status"] == "处理中"
        await Inspector(redis_client).cancel_task(task_id)
        await eventually(lambda: _is(state_of(redis_client, task_id), TaskState.ARCHIVED), "archived")
        record = await reconcile_until_final(reconciler_for(pipeline, redis_client), pipeline.store, task_id)
    assert record.status == "failed" and "context canceled" in (record.error or "")
    assert record.metadata == {"table_name": "valuation_records", "id": record_id}
    row = read_record(mariadb_server, db, record_id)
    assert row["status"] == "失败" and row["failed_times"] == 1 and "context canceled" in row["failed_info"]


async def test_an_archive_larger_than_a_pass_is_read_across_passes(
    pipeline_env: PipelineEnv, redis_client: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reconciler_module, "PAGE", 2)
    monkeypatch.setattr(reconciler_module, "MAX_PAGES", 2)  # 4 archived tasks a pass
    inspector = Inspector(redis_client)
    ids = [await enqueue(redis_client, f"archived {i}", "", max_retry=0) for i in range(7)]
    for task_id in ids:
        await inspector.archive_task("default", task_id)
    async with running_worker(pipeline_env.settings, redis_client) as pipeline:
        reconciler = reconciler_for(pipeline, redis_client)
        await eventually(lambda: _archive_read(reconciler), "a pass read the first page")
        assert (await reconciler.reconcile_once()).archived_finished == 3
        records = [await pipeline.store.get(task_id) for task_id in ids]
    assert all(r is not None and r.status == "failed" for r in records)


async def _archive_read(reconciler: Reconciler) -> bool:
    """One pass; True once it read archived tasks (their second must be over first)."""
    return (await reconciler.reconcile_once()).archived_finished == 4


async def test_redis_error_on_the_last_attempt(
    pipeline_env: PipelineEnv,
    redis_client: aioredis.Redis,
    stub_llm: StubLLMProcess,
    callback_receiver: CallbackReceiver,
    redis_server: RedisServer,
) -> None:
    tag = uuid.uuid4().hex
    stub_llm.configure(faults=[{"kind": "400", "match": tag}], latency="1")
    async with running_worker(pipeline_env.settings, redis_client) as pipeline:
        task_id = await enqueue(
            redis_client, f"redis down {tag}", callback_receiver.url + "/hook", max_retry=0
        )
        await eventually(lambda: asyncio.to_thread(lambda: stub_llm.stats()["in_flight"] == 1), "in flight")
        redis_server.stop()  # the failure is stored, but its callback cannot be queued nor the task acked
        try:
            row = await wait_row(pipeline.store, task_id, lambda r: r.finished)
        finally:
            redis_server.start()  # without persistence: the task and any trace of its callback are gone
        assert row.status == "failed" and row.callback_status == "pending"
        counts = await reconciler_for(pipeline, redis_client).reconcile_once()
        assert counts.callbacks_requeued == 1
        await wait_callback_state(pipeline.store, task_id, "delivered")
    assert "HTTP 400" in failed_callback(callback_receiver, task_id)["error"]
