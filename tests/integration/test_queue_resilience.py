"""Failure handling: shutdown, expired leases, corrupt data, Redis outages, priorities."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter

import pytest
import redis.asyncio as aioredis
from redis import exceptions as redis_errors

from sytq.queue import EnqueueRequest, Inspector, QueueClient, QueueUnavailableError, Task, TaskState
from sytq.queue.codec import TaskMessage
from tests.harness.queue_fixtures import ServerRunner, running_server, wait_until
from tests.harness.services import RedisServer


async def test_graceful_shutdown_requeues_unfinished(
    redis_client: aioredis.Redis, queue_client: QueueClient, inspector: Inspector, queue_server: ServerRunner
) -> None:
    started: list[str] = []

    async def stuck(task: Task) -> None:
        started.append(task.id)
        await asyncio.sleep(60)

    ids = [(await queue_client.enqueue("stuck", b"")).id for _ in range(20)]
    async with queue_server({"stuck": stuck}, shutdown_timeout=0.2):
        await wait_until(lambda: len(started) == 20)
    stats = await inspector.queue_stats("default")
    assert (stats.pending, stats.active, stats.retry) == (20, 0, 0)
    assert await redis_client.zcard("asynq:{default}:lease") == 0
    assert sorted(
        t.id for t in await inspector.list_tasks("default", TaskState.PENDING, page_size=50)
    ) == sorted(ids)
    assert all(t.retried == 0 for t in await inspector.list_tasks("default", TaskState.PENDING, page_size=50))


async def test_graceful_shutdown_lets_short_tasks_finish(
    queue_client: QueueClient, inspector: Inspector, queue_server: ServerRunner
) -> None:
    started = asyncio.Event()

    async def short(task: Task) -> None:
        started.set()
        await asyncio.sleep(0.3)

    await queue_client.enqueue("short", b"")
    async with queue_server({"short": short}, shutdown_timeout=5):
        await asyncio.wait_for(started.wait(), 5)
    stats = await inspector.queue_stats("default")
    assert (stats.pending, stats.active, stats.processed_total) == (0, 0, 1)


async def test_expired_lease_of_dead_worker_is_recovered(
    redis_client: aioredis.Redis, queue_client: QueueClient, inspector: Inspector, queue_server: ServerRunner
) -> None:
    info = await queue_client.enqueue("t", b"", max_retry=5)
    # A worker that died right after dequeue: task active with a lease that ran out long ago.
    task_id = (await redis_client.rpoplpush("asynq:{default}:pending", "asynq:{default}:active")).decode()
    await redis_client.hset(f"asynq:{{default}}:t:{task_id}", "state", "active")
    await redis_client.zadd("asynq:{default}:lease", {task_id: 1000})
    ran: list[int] = []

    async def handler(task: Task) -> None:
        ran.append(task.retried)

    async with queue_server({"t": handler}, retry_delay=lambda n, e, t: 0.0):
        await wait_until(lambda: ran == [1])
    stats = await inspector.queue_stats("default")
    assert (stats.active, stats.retry, stats.processed_total, stats.failed_total) == (0, 0, 2, 1)
    assert info.id == task_id


async def test_corrupt_message_is_archived_and_loop_survives(
    redis_client: aioredis.Redis, queue_client: QueueClient, inspector: Inspector, queue_server: ServerRunner
) -> None:
    await redis_client.hset(
        "asynq:{default}:t:bad", mapping={"msg": b"\xff\xff\xff not protobuf", "state": "pending"}
    )
    await redis_client.lpush("asynq:{default}:pending", "bad")
    await redis_client.lpush("asynq:{default}:pending", "ghost")  # id without a task hash
    await redis_client.sadd("asynq:queues", "default")
    ran: list[str] = []

    async def handler(task: Task) -> None:
        ran.append(task.id)

    good = await queue_client.enqueue("t", b"ok")
    async with queue_server({"t": handler}):
        await wait_until(lambda: ran == [good.id])
        await wait_until(lambda: _archived_count(redis_client, 1))
    quarantined = await inspector.get_task("default", "bad")  # a readable message keeps the bytes
    assert (quarantined.state, quarantined.type) == (TaskState.ARCHIVED, "sytq:corrupt-message")
    assert quarantined.payload == b"\xff\xff\xff not protobuf"
    assert quarantined.last_error.startswith("corrupt task message:")
    assert await redis_client.llen("asynq:{default}:active") == 0
    assert await redis_client.zcard("asynq:{default}:lease") == 0


async def _archived_count(redis_client: aioredis.Redis, n: int) -> bool:
    return int(await redis_client.zcard("asynq:{default}:archived")) == n


@pytest.mark.slow
async def test_redis_restart_mid_run_loses_nothing() -> None:
    """Redis goes away (saving its data, as a persistent production Redis would) and comes back:
    enqueue fails clearly meanwhile, the worker keeps going afterwards and every task runs."""
    server = RedisServer()  # a private one: this test stops it
    server.start()
    client = aioredis.Redis.from_url(server.url)
    queue = QueueClient(client)
    done: set[str] = set()

    async def handler(task: Task) -> None:
        await asyncio.sleep(0.01)
        done.add(task.id)

    first = {(await queue.enqueue("t", f"{i}".encode())).id for i in range(200)}
    try:
        async with running_server(client, {"t": handler}, concurrency=20):
            await wait_until(lambda: len(done) >= 20)
            with contextlib.suppress(redis_errors.ConnectionError):
                await client.shutdown(save=True)
            with pytest.raises(QueueUnavailableError):
                await queue.enqueue("t", b"during outage")
            await asyncio.sleep(1.0)
            server.start()
            second = {(await queue.enqueue("t", f"after{i}".encode())).id for i in range(50)}

            async def drained() -> bool:
                stats = await Inspector(client).queue_stats("default")
                return stats.pending + stats.active + stats.retry == 0 and (first | second) <= done

            await wait_until(drained, within=30)
    finally:
        with contextlib.suppress(Exception):
            await client.aclose()
        server.close()


async def test_strict_priority_drains_high_queue_first(
    queue_client: QueueClient, queue_server: ServerRunner
) -> None:
    order: list[str] = []

    async def handler(task: Task) -> None:
        order.append(task.queue)

    for _ in range(30):
        await queue_client.enqueue("t", b"", queue="low")
    for _ in range(30):
        await queue_client.enqueue("t", b"", queue="high")
    async with queue_server(
        {"t": handler}, queues={"high": 5, "low": 1}, strict_priority=True, concurrency=1, fetch_batch=1
    ):
        await wait_until(lambda: len(order) == 60)
    assert order == ["high"] * 30 + ["low"] * 30


async def test_weighted_priority_favours_heavy_queue(
    queue_client: QueueClient, queue_server: ServerRunner
) -> None:
    order: list[str] = []

    async def handler(task: Task) -> None:
        order.append(task.queue)

    for _ in range(200):
        await queue_client.enqueue("t", b"", queue="light")
        await queue_client.enqueue("t", b"", queue="heavy")
    async with queue_server({"t": handler}, queues={"heavy": 6, "light": 1}, concurrency=1, fetch_batch=1):
        await wait_until(lambda: len(order) >= 140)
    first = order[:140]
    assert first.count("heavy") > 3 * first.count("light") > 0


async def test_message_roundtrip_keeps_every_field() -> None:
    msg = TaskMessage(
        type="a",
        payload=b"\x00\x01",
        id="i",
        queue="q",
        retry=3,
        retried=2,
        error_msg="e",
        timeout=5,
        deadline=6,
        unique_key="u",
        last_failed_at=7,
        retention=8,
        completed_at=9,
        group_key="g",
        headers={"h": "v"},
    )
    assert TaskMessage.decode(msg.encode()) == msg


@pytest.mark.slow
async def test_thousands_of_tasks_in_flight_at_once(
    queue_client: QueueClient, inspector: Inspector, queue_server: ServerRunner
) -> None:
    total = 3000
    running = 0
    peak = 0
    gate = asyncio.Event()

    async def wait_for_gate(task: Task) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await gate.wait()
        running -= 1

    await queue_client.enqueue_many([EnqueueRequest("w", b"") for _ in range(total)])
    async with queue_server(
        {"w": wait_for_gate}, concurrency=total, fetch_batch=1000, heartbeat_interval=0.3
    ):
        await wait_until(lambda: peak == total, within=30)
        active = (await inspector.queue_stats("default")).active

        async def all_workers_listed() -> bool:
            servers = await inspector.servers()
            return len(servers) == 1 and len(servers[0].workers) == total

        await wait_until(all_workers_listed, within=10)  # asynq's worker hash, written in chunks
        gate.set()

        async def drained() -> bool:
            return (await inspector.queue_stats("default")).processed_total == total

        await wait_until(drained, within=30)
    assert active == total


@pytest.mark.slow
async def test_handler_is_cancelled_when_its_lease_cannot_be_extended() -> None:
    """Redis gone longer than the lease: another server may take the task over, so ours stops it."""
    server = RedisServer()
    server.start()
    client = aioredis.Redis.from_url(server.url)
    cancelled = asyncio.Event()
    started = asyncio.Event()

    async def long(task: Task) -> None:
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    try:
        await QueueClient(client).enqueue("long", b"")
        async with running_server(client, {"long": long}, lease_seconds=1.5, shutdown_timeout=0.1):
            await asyncio.wait_for(started.wait(), 5)
            server.kill()
            lost_at = asyncio.get_running_loop().time()
            await asyncio.wait_for(cancelled.wait(), 5)
            assert asyncio.get_running_loop().time() - lost_at <= 2.0
    finally:
        with contextlib.suppress(Exception):
            await client.aclose()
        server.close()


@pytest.mark.slow
async def test_connection_drops_mid_operation_lose_nothing(
    redis_client: aioredis.Redis, redis_server: RedisServer
) -> None:
    """Every client connection is killed every 30 ms while 500 tasks run: replies get lost mid-dequeue
    and mid-ack; the loops keep going, lost dequeues come back through lease recovery, nothing is lost."""
    worker_client = aioredis.Redis.from_url(redis_server.url)
    done: set[str] = set()

    async def handler(task: Task) -> None:
        await asyncio.sleep(0.005)
        done.add(task.id)

    infos = await QueueClient(redis_client).enqueue_many([EnqueueRequest("t", b"") for _ in range(500)])
    ids = {i.id for i in infos}  # type: ignore[union-attr]
    killing = True

    async def killer() -> None:
        killer_client = aioredis.Redis.from_url(redis_server.url)
        while killing:
            with contextlib.suppress(redis_errors.RedisError):
                await killer_client.client_kill_filter(_type="normal", skipme=True)
            await asyncio.sleep(0.03)
        await killer_client.aclose()

    try:
        async with running_server(
            worker_client,
            {"t": handler},
            concurrency=50,
            lease_seconds=2,
            recover_interval=0.2,
            lease_grace=0.2,
            retry_delay=lambda n, e, t: 0.0,
        ):
            chaos = asyncio.create_task(killer())
            await wait_until(lambda: len(done) >= 450, within=30)
            killing = False
            await chaos

            async def drained() -> bool:
                stats = await Inspector(redis_client).queue_stats("default")
                return stats.pending + stats.active + stats.retry == 0

            await wait_until(drained, within=30)
        assert ids <= done
        assert (await Inspector(redis_client).queue_stats("default")).archived == 0
    finally:
        killing = False
        await worker_client.aclose()


async def test_two_servers_share_a_queue_and_run_each_task_once(
    redis_client: aioredis.Redis, redis_server: RedisServer
) -> None:
    runs: Counter[str] = Counter()

    async def handler(task: Task) -> None:
        runs[task.id] += 1
        await asyncio.sleep(0.001)

    infos = await QueueClient(redis_client).enqueue_many([EnqueueRequest("t", b"") for _ in range(2000)])
    other = aioredis.Redis.from_url(redis_server.url)
    try:
        async with (
            running_server(redis_client, {"t": handler}, concurrency=64, fetch_batch=16),
            running_server(other, {"t": handler}, concurrency=64, fetch_batch=16),
        ):
            await wait_until(lambda: len(runs) == 2000, within=30)
    finally:
        await other.aclose()
    assert set(runs) == {i.id for i in infos}  # type: ignore[union-attr]
    assert set(runs.values()) == {1}
    assert (await Inspector(redis_client).queue_stats("default")).processed_total == 2000


async def test_redis_out_of_memory_is_unavailable_and_acks_wait_it_out() -> None:
    server = RedisServer()
    server.start()
    client = aioredis.Redis.from_url(server.url)
    done: list[str] = []
    release = asyncio.Event()

    async def handler(task: Task) -> None:
        await release.wait()
        done.append(task.id)

    try:
        queue = QueueClient(client)
        info = await queue.enqueue("t", b"")
        async with running_server(client, {"t": handler}):
            await wait_until(lambda: _active_is(client, 1))
            await client.config_set("maxmemory", 1)  # every write is refused with OOM from now on
            with pytest.raises(QueueUnavailableError):
                await queue.enqueue("t", b"")
            release.set()
            await wait_until(lambda: done == [info.id])
            await asyncio.sleep(0.3)  # the ack is refused meanwhile and kept
            assert await client.llen("asynq:{default}:active") == 1
            await client.config_set("maxmemory", 0)
            await wait_until(lambda: _active_is(client, 0))
        assert int(await client.get("asynq:{default}:processed") or 0) == 1
    finally:
        with contextlib.suppress(Exception):
            await client.aclose()
        server.close()


async def _active_is(client: aioredis.Redis, n: int) -> bool:
    return int(await client.llen("asynq:{default}:active")) == n
