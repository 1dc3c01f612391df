"""The promises under failure: kill -9 of a worker mid-call, MariaDB away for 30 s."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
import redis.asyncio as aioredis
import sqlalchemy as sa

from sytq.queue import Inspector
from sytq.storage import TaskStore
from tests.harness.llm_fixtures import (
    PipelineEnv,
    StubLLMProcess,
    WorkerProcess,
    running_worker,
    wait_final,
)
from tests.harness.services import MariaDBServer
from tests.integration.test_pipeline_chat import chat_payload, enqueue

pytestmark = pytest.mark.slow  # end to end: seconds each; left out of `make unit`


def count_rows(store: TaskStore, task_ids: list[str]) -> int:
    with store.engine.connect() as conn:
        query = sa.text("SELECT COUNT(*) FROM sytq_llm_tasks WHERE task_id IN :ids").bindparams(
            sa.bindparam("ids", expanding=True)
        )
        return int(conn.execute(query, {"ids": task_ids}).scalar_one())


async def wait_until(condition: object, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await asyncio.to_thread(condition):  # type: ignore[arg-type]
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{what} not reached within {within}s")


async def test_worker_killed_mid_call_loses_nothing_and_writes_no_duplicate(
    pipeline_env: PipelineEnv, redis_client: aioredis.Redis, stub_llm: StubLLMProcess
) -> None:
    stub_llm.configure(latency="2")
    tag = uuid.uuid4().hex
    store = TaskStore.from_url(pipeline_env.settings.effective_database_url)
    victim = WorkerProcess(pipeline_env.settings)
    try:
        ids = [await enqueue(redis_client, chat_payload(f"crash {tag} <{i}>")) for i in range(20)]
        await wait_until(lambda: stub_llm.stats()["in_flight"] == 20, 30, "20 calls in flight")
        victim.kill()
        survivor = WorkerProcess(pipeline_env.settings)
        try:
            records = [await wait_final(store, task_id, within=60) for task_id in ids]
        finally:
            assert survivor.stop() == 0
    finally:
        victim.kill()
    assert all(r.status == "succeeded" for r in records)
    assert count_rows(store, ids) == 20
    # Each call cut by the kill is made once more; none a third time.
    assert [stub_llm.calls_for(f"crash {tag} <{i}>") for i in range(20)] == [2] * 20
    inspector = Inspector(redis_client)
    assert {(await inspector.get_task("default", t)).state for t in ids} == {"completed"}
    await store.close()


async def test_mariadb_away_for_30s_tasks_wait_and_all_finish(
    pipeline_env: PipelineEnv,
    mariadb_server: MariaDBServer,
    redis_client: aioredis.Redis,
    stub_llm: StubLLMProcess,
) -> None:
    stub_llm.configure(latency="0.5")
    tag = uuid.uuid4().hex
    settings = pipeline_env.settings.model_copy(update={"worker_concurrency": 10})
    async with running_worker(settings, redis_client) as pipeline:
        ids = [await enqueue(redis_client, chat_payload(f"outage {tag} <{i}>")) for i in range(40)]
        await wait_final(pipeline.store, ids[0], within=30)
        mariadb_server.stop()
        try:
            await asyncio.sleep(30)
            during = stub_llm.stats()["requests"]
        finally:
            mariadb_server.start()
        records = [await wait_final(pipeline.store, task_id, within=120) for task_id in ids]
        assert count_rows(pipeline.store, ids) == 40
    assert all(r.status == "succeeded" for r in records)
    # Answers paid for during the outage were kept, not fetched again.
    assert all(stub_llm.calls_for(f"outage {tag} <{i}>") == 1 for i in range(40))
    assert during < 40  # the outage really held work back


async def test_worker_process_with_hundreds_in_flight_calls_each_prompt_once(
    pipeline_env: PipelineEnv, redis_client: aioredis.Redis, stub_llm: StubLLMProcess
) -> None:
    """Hundreds of handlers finishing together must not exhaust the worker's Redis pool."""
    stub_llm.configure(latency="1")
    tag = uuid.uuid4().hex
    settings = pipeline_env.settings.model_copy(update={"worker_concurrency": 400})
    store = TaskStore.from_url(settings.effective_database_url)
    ids = [await enqueue(redis_client, chat_payload(f"wide {tag} <{i}>")) for i in range(400)]
    worker = WorkerProcess(settings)
    try:
        records = [await wait_final(store, task_id, within=60) for task_id in ids]
        assert stub_llm.stats()["max_in_flight"] >= 200
    finally:
        assert worker.stop() == 0
    assert all(r.status == "succeeded" and r.attempts == 1 for r in records)
    assert [stub_llm.calls_for(f"wide {tag} <{i}>") for i in range(400)] == [1] * 400
    await store.close()


async def test_calls_in_flight_never_exceed_the_concurrency_while_prefetched_tasks_wait(
    pipeline_env: PipelineEnv, redis_client: aioredis.Redis, stub_llm: StubLLMProcess
) -> None:
    """SYTQ_WORKER_CONCURRENCY caps provider calls; SYTQ_WORKER_PREFETCH more tasks are held
    (active in the queue) and take a call slot the moment one frees."""
    stub_llm.reset()  # also restarts the stub's max-in-flight count
    stub_llm.configure(latency="1")
    tag = uuid.uuid4().hex
    settings = pipeline_env.settings.model_copy(update={"worker_concurrency": 5, "worker_prefetch": 3})
    store = TaskStore.from_url(settings.effective_database_url)
    ids = [await enqueue(redis_client, chat_payload(f"slots {tag} <{i}>")) for i in range(20)]
    worker = WorkerProcess(settings)
    try:
        inspector = Inspector(redis_client)
        most_active = 0
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and most_active < 8:
            most_active = max(most_active, (await inspector.queue_stats("default")).active)
            await asyncio.sleep(0.05)
        records = [await wait_final(store, task_id, within=60) for task_id in ids]
    finally:
        assert worker.stop() == 0
    assert most_active == 8  # 5 calling + 3 held
    assert stub_llm.stats()["max_in_flight"] == 5
    assert all(r.status == "succeeded" for r in records)
    await store.close()
