"""Inspector against a real Redis: stats, listing, delete / run / archive, pause, servers."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

import pytest
import redis.asyncio as aioredis

from sytq import redis_keys
from sytq.queue import (
    Inspector,
    QueueClient,
    QueueNotFoundError,
    Task,
    TaskInfo,
    TaskNotFoundError,
    TaskState,
    TaskStateError,
)
from sytq.queue.proto import WorkerInfoProto
from tests.harness.queue_fixtures import ServerRunner, wait_until


async def test_stats_count_every_state(
    redis_client: aioredis.Redis, queue_client: QueueClient, inspector: Inspector
) -> None:
    for i in range(3):
        await queue_client.enqueue("t", f"{i}".encode(), queue="q")
    await queue_client.enqueue("t", b"s", queue="q", process_in=600)
    stats = await inspector.queue_stats("q")
    assert (stats.pending, stats.scheduled, stats.size, stats.paused) == (3, 1, 4, False)
    assert 0 <= stats.latency_seconds < 5
    assert 4 * 50 < stats.memory_usage_bytes < 100_000  # four task hashes and their structures
    assert await inspector.queues() == ["q"]
    with pytest.raises(QueueNotFoundError):
        await inspector.queue_stats("nope")


async def test_list_tasks_pages_in_dequeue_order(queue_client: QueueClient, inspector: Inspector) -> None:
    ids = [(await queue_client.enqueue("t", f"{i}".encode())).id for i in range(7)]
    first = await inspector.list_tasks("default", TaskState.PENDING, page_size=3, page=0)
    second = await inspector.list_tasks("default", TaskState.PENDING, page_size=3, page=1)
    third = await inspector.list_tasks("default", TaskState.PENDING, page_size=3, page=2)
    assert [t.id for t in first + second + third] == ids
    assert await inspector.list_tasks("default", TaskState.ARCHIVED) == []


async def test_list_tasks_of_sorted_set_states(queue_client: QueueClient, inspector: Inspector) -> None:
    later = [(await queue_client.enqueue("t", b"", process_in=100 * (i + 1))).id for i in range(5)]
    listed = await inspector.list_tasks("default", TaskState.SCHEDULED, page_size=2, page=1)
    assert [t.id for t in listed] == later[2:4]
    assert all(t.state is TaskState.SCHEDULED and t.next_process_at is not None for t in listed)
    await inspector.archive_task("default", later[0])
    (archived,) = await inspector.list_tasks("default", TaskState.ARCHIVED)
    assert archived.id == later[0]


async def test_run_archive_delete_moves(
    redis_client: aioredis.Redis, queue_client: QueueClient, inspector: Inspector
) -> None:
    info = await queue_client.enqueue("t", b"x", process_in=3600)
    await inspector.archive_task("default", info.id)
    assert (await inspector.get_task("default", info.id)).state is TaskState.ARCHIVED
    assert await redis_client.zcard("asynq:{default}:scheduled") == 0
    with pytest.raises(TaskStateError):
        await inspector.archive_task("default", info.id)
    await inspector.run_task("default", info.id)
    assert (await inspector.get_task("default", info.id)).state is TaskState.PENDING
    assert await redis_client.lrange("asynq:{default}:pending", 0, -1) == [info.id.encode()]
    with pytest.raises(TaskStateError):
        await inspector.run_task("default", info.id)
    found = await inspector.find_task(info.id)
    assert found.queue == "default"
    await inspector.delete_task("default", info.id)
    with pytest.raises(TaskNotFoundError):
        await inspector.get_task("default", info.id)
    with pytest.raises(TaskNotFoundError):
        await inspector.delete_task("default", info.id)
    assert await redis_client.llen("asynq:{default}:pending") == 0


async def test_delete_releases_unique_lock(queue_client: QueueClient, inspector: Inspector) -> None:
    info = await queue_client.enqueue("u", b"p", unique_for=600)
    await inspector.delete_task("default", info.id)
    await queue_client.enqueue("u", b"p", unique_for=600)


async def test_active_task_cannot_be_deleted_and_servers_are_listed(
    queue_client: QueueClient, inspector: Inspector, queue_server: ServerRunner
) -> None:
    release = asyncio.Event()
    started = asyncio.Event()

    async def hold(task: Task) -> None:
        started.set()
        await release.wait()

    info = await queue_client.enqueue("hold", b"payload")
    async with queue_server(
        {"hold": hold}, concurrency=7, queues={"default": 2, "low": 1}, heartbeat_interval=0.2
    ):
        await asyncio.wait_for(started.wait(), 5)
        with pytest.raises(TaskStateError):
            await inspector.delete_task("default", info.id)

        async def listed() -> bool:
            servers = await inspector.servers()
            return len(servers) == 1 and len(servers[0].workers) == 1

        await wait_until(listed)
        (server,) = await inspector.servers()
        assert (server.concurrency, server.queues, server.status) == (7, {"default": 2, "low": 1}, "active")
        assert server.workers[0].task_id == info.id and server.workers[0].task_type == "hold"
        release.set()
    assert await inspector.servers() == []


async def test_heartbeat_sends_a_worker_once_and_rewrites_a_lost_workers_hash(
    redis_client: aioredis.Redis, queue_client: QueueClient, queue_server: ServerRunner
) -> None:
    """A WorkerInfo carries the task's whole payload: a heartbeat writes it when the task starts,
    not on every beat; a hash that is not as written (here deleted) is written anew."""
    release = asyncio.Event()
    started = asyncio.Event()

    async def hold(task: Task) -> None:
        started.set()
        await release.wait()

    payload = b"p" * 100_000
    info = await queue_client.enqueue("hold", payload)
    async with queue_server({"hold": hold}, heartbeat_interval=0.1, host="hb-host", pid=4242) as server:
        server_key = redis_keys.server_info_key("hb-host", 4242, server.server_id)
        workers_key = redis_keys.workers_key("hb-host", 4242, server.server_id)
        await asyncio.wait_for(started.wait(), 5)
        await wait_until(lambda: redis_client.hexists(workers_key, info.id))
        await redis_client.hset(workers_key, info.id, b"as written")
        for _ in range(3):
            await _next_heartbeat(redis_client, server_key)
        assert await redis_client.hget(workers_key, info.id) == b"as written"

        await redis_client.delete(workers_key)
        await wait_until(lambda: redis_client.hexists(workers_key, info.id))
        written = WorkerInfoProto.FromString(await redis_client.hget(workers_key, info.id))
        assert (written.task_id, written.task_payload) == (info.id, payload)

        release.set()
        await wait_until(lambda: _equals(redis_client.hlen(workers_key), 0))


async def _next_heartbeat(redis_client: aioredis.Redis, server_key: str) -> None:
    """Wait for a heartbeat that ran after this call: each one writes the server info key again."""
    await redis_client.delete(server_key)
    await wait_until(lambda: redis_client.exists(server_key))


async def _equals(value: Awaitable[int], expected: int) -> bool:
    return await value == expected


async def test_pause_stops_dequeue(
    queue_client: QueueClient, inspector: Inspector, queue_server: ServerRunner
) -> None:
    ran: list[str] = []

    async def handler(task: Task) -> None:
        ran.append(task.id)

    await queue_client.enqueue("t", b"")
    await inspector.pause_queue("default")
    assert (await inspector.queue_stats("default")).paused
    async with queue_server({"t": handler}):
        await asyncio.sleep(0.4)
        assert ran == []
        await inspector.unpause_queue("default")
        await wait_until(lambda: len(ran) == 1)


async def test_get_tasks_answers_each_task_in_its_place(
    redis_client: aioredis.Redis, queue_client: QueueClient, inspector: Inspector
) -> None:
    pending = await queue_client.enqueue("t", b"a", queue="q")
    later = await queue_client.enqueue("t", b"b", queue="q", process_in=600)
    before = (await redis_client.info("stats"))["total_commands_processed"]
    asked = [("q", later.id), ("q", "missing"), ("bad name", "x"), ("q", pending.id)]
    found = await inspector.get_tasks(asked)
    after = (await redis_client.info("stats"))["total_commands_processed"]
    kinds = [type(f).__name__ for f in found]
    assert kinds == ["TaskInfo", "TaskNotFoundError", "InvalidTaskError", "TaskInfo"]
    scheduled, _, _, waiting = found
    assert isinstance(scheduled, TaskInfo) and isinstance(waiting, TaskInfo)
    assert scheduled.state is TaskState.SCHEDULED and scheduled.next_process_at is not None
    assert waiting.id == pending.id and waiting.state is TaskState.PENDING
    assert after - before == 3 * 3 + 1  # three reads per valid task, plus the INFO itself
    with pytest.raises(TaskNotFoundError):
        await inspector.get_task("q", "missing")
