"""Task lifecycle against a real Redis: enqueue, run, retry, archive, complete, in asynq's layout."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.asyncio.client import PubSub

from sytq.queue import (
    TASK_EVENTS_CHANNEL,
    DuplicateTaskError,
    EnqueueRequest,
    Inspector,
    InvalidTaskError,
    QueueClient,
    RetryIn,
    SkipRetry,
    Task,
    TaskIdConflictError,
    TaskNotFoundError,
    TaskState,
)
from sytq.queue import server as server_module
from sytq.queue.codec import TaskMessage
from sytq.redis_keys import CANCEL_CHANNEL
from tests.harness.queue_fixtures import ServerRunner, running_server, wait_until
from tests.harness.services import RedisServer


async def test_enqueue_writes_asynq_layout(redis_client: aioredis.Redis, queue_client: QueueClient) -> None:
    info = await queue_client.enqueue("email:send", b'{"to":"a"}', queue="mail", max_retry=3, timeout=60)
    assert info.state is TaskState.PENDING
    assert await redis_client.smembers("asynq:queues") == {b"mail"}
    assert await redis_client.lrange("asynq:{mail}:pending", 0, -1) == [info.id.encode()]
    fields = await redis_client.hgetall(f"asynq:{{mail}}:t:{info.id}")
    assert fields[b"state"] == b"pending"
    assert int(fields[b"pending_since"]) > 0
    msg = TaskMessage.decode(fields[b"msg"])
    assert (msg.type, msg.payload, msg.id, msg.queue, msg.retry, msg.timeout) == (
        "email:send",
        b'{"to":"a"}',
        info.id,
        "mail",
        3,
        60,
    )


async def test_defaults_follow_asynq(queue_client: QueueClient, inspector: Inspector) -> None:
    info = await queue_client.enqueue("t", b"")
    got = await inspector.get_task("default", info.id)
    assert (got.max_retry, got.timeout, got.retried, got.state) == (25, 1800, 0, TaskState.PENDING)


async def test_task_id_conflict_and_unique(queue_client: QueueClient) -> None:
    await queue_client.enqueue("t", b"x", task_id="fixed")
    with pytest.raises(TaskIdConflictError):
        await queue_client.enqueue("t", b"y", task_id="fixed")
    await queue_client.enqueue("u", b"same", unique_for=60)
    with pytest.raises(DuplicateTaskError):
        await queue_client.enqueue("u", b"same", unique_for=60)
    await queue_client.enqueue("u", b"other", unique_for=60)


async def test_bad_input_is_rejected_without_writing(
    redis_client: aioredis.Redis, queue_client: QueueClient
) -> None:
    for kwargs in (
        {"max_retry": -1},
        {"timeout": -5},
        {"queue": ""},
        {"queue": "a{b}"},
        {"unique_for": 0.5},
        {"task_id": " "},
        {"process_in": float("nan")},
        {"timeout": float("nan")},
        {"timeout": float("inf")},
        {"timeout": True},
        {"timeout": "60"},
        {"retention": -1},
        {"retention": float("nan")},
        {"retention": True},
    ):
        with pytest.raises(InvalidTaskError):
            await queue_client.enqueue("t", b"x", **kwargs)  # type: ignore[arg-type]
    with pytest.raises(InvalidTaskError):
        await queue_client.enqueue("", b"x")
    assert await redis_client.dbsize() == 0


async def test_enqueue_many_reports_per_item(queue_client: QueueClient) -> None:
    await queue_client.enqueue("t", b"x", task_id="taken")
    out = await queue_client.enqueue_many(
        [
            EnqueueRequest("t", b"1"),
            EnqueueRequest("t", b"2", task_id="taken"),
            EnqueueRequest("", b"3"),
            EnqueueRequest("t", b"4", queue="other", process_in=60),
        ]
    )
    assert out[0].state is TaskState.PENDING  # type: ignore[union-attr]
    assert isinstance(out[1], TaskIdConflictError)
    assert isinstance(out[2], InvalidTaskError)
    assert out[3].state is TaskState.SCHEDULED  # type: ignore[union-attr]


async def test_enqueue_ids_reports_per_item_as_enqueue_many(
    queue_client: QueueClient, inspector: Inspector
) -> None:
    await queue_client.enqueue("t", b"x", task_id="taken")
    ids = await queue_client.enqueue_ids(
        [
            EnqueueRequest("t", b"1", task_id="fresh"),
            EnqueueRequest("t", b"2", task_id="taken"),
            EnqueueRequest("", b"3"),
            EnqueueRequest("t", b"4", queue="other", process_in=60),
            EnqueueRequest("u", b"5", unique_for=60),
            EnqueueRequest("u", b"5", unique_for=60),
        ]
    )
    assert ids[0] == "fresh"
    assert isinstance(ids[1], TaskIdConflictError)
    assert isinstance(ids[2], InvalidTaskError)
    assert isinstance(ids[3], str) and isinstance(ids[4], str)
    assert isinstance(ids[5], DuplicateTaskError)
    assert (await inspector.get_task("default", "fresh")).payload == b"1"
    assert (await inspector.get_task("other", ids[3])).state is TaskState.SCHEDULED
    one = await queue_client.enqueue_request_id(EnqueueRequest("t", b"6", task_id="single"))
    assert one == "single"
    with pytest.raises(TaskIdConflictError):
        await queue_client.enqueue_request_id(EnqueueRequest("t", b"7", task_id="single"))


async def test_server_runs_handler_and_deletes_task(
    redis_client: aioredis.Redis, queue_client: QueueClient, inspector: Inspector, queue_server: ServerRunner
) -> None:
    seen: list[tuple[str, bytes]] = []

    async def handler(task: Task) -> None:
        seen.append((task.id, task.payload))

    infos = [await queue_client.enqueue("echo", f"{i}".encode()) for i in range(50)]
    async with queue_server({"echo": handler}):
        await wait_until(lambda: len(seen) == 50)
        task_keys = [f"asynq:{{default}}:t:{i.id}" for i in infos]

        async def all_deleted() -> bool:
            return await redis_client.exists(*task_keys) == 0

        await wait_until(all_deleted)
    stats = await inspector.queue_stats("default")
    assert (
        stats.pending,
        stats.active,
        stats.processed_today,
        stats.failed_today,
        stats.processed_total,
    ) == (0, 0, 50, 0, 50)
    assert await redis_client.zcard("asynq:{default}:lease") == 0
    day = datetime.now(UTC).strftime("%Y-%m-%d")
    assert await redis_client.ttl(f"asynq:{{default}}:processed:{day}") > 80 * 86400


async def test_retention_keeps_completed_task_with_result(
    queue_client: QueueClient, inspector: Inspector, queue_server: ServerRunner
) -> None:
    async def handler(task: Task) -> None:
        await task.write_result(b"answer:" + task.payload)

    info = await queue_client.enqueue("calc", b"42", retention=3600)
    async with queue_server({"calc": handler}):
        await wait_until(lambda: _state_is(inspector, info.id, TaskState.COMPLETED))
    got = await inspector.get_task("default", info.id)
    assert got.result == b"answer:42"
    assert got.completed_at is not None and got.retention == 3600


async def _state_is(inspector: Inspector, task_id: str, state: TaskState, queue: str = "default") -> bool:
    try:
        return (await inspector.get_task(queue, task_id)).state is state
    except TaskNotFoundError:
        return False


async def test_failure_retries_then_archives(
    queue_client: QueueClient, inspector: Inspector, queue_server: ServerRunner
) -> None:
    attempts: list[int] = []

    async def failing(task: Task) -> None:
        attempts.append(task.retried)
        raise RuntimeError(f"boom {task.retried}")

    info = await queue_client.enqueue("fail", b"", max_retry=2)
    async with queue_server({"fail": failing}, retry_delay=lambda n, e, t: 0.0):
        await wait_until(lambda: _state_is(inspector, info.id, TaskState.ARCHIVED))
    got = await inspector.get_task("default", info.id)
    assert attempts == [0, 1, 2]
    assert got.retried == 2 and got.last_error == "boom 2" and got.last_failed_at is not None
    stats = await inspector.queue_stats("default")
    assert (stats.archived, stats.processed_today, stats.failed_today) == (1, 3, 3)


async def test_skip_retry_and_retry_in(
    queue_client: QueueClient, inspector: Inspector, queue_server: ServerRunner
) -> None:
    async def skip(task: Task) -> None:
        raise SkipRetry("bad payload")

    async def later(task: Task) -> None:
        raise RetryIn(120, "rate limited")

    a = await queue_client.enqueue("skip", b"")
    b = await queue_client.enqueue("later", b"")
    async with queue_server({"skip": skip, "later": later}):
        await wait_until(lambda: _state_is(inspector, a.id, TaskState.ARCHIVED))
        await wait_until(lambda: _state_is(inspector, b.id, TaskState.RETRY))
    got_a, got_b = await inspector.get_task("default", a.id), await inspector.get_task("default", b.id)
    assert got_a.retried == 0 and got_a.last_error == "bad payload"
    assert got_b.retried == 1 and got_b.last_error == "rate limited"
    assert got_b.next_process_at is not None
    wait = (got_b.next_process_at - datetime.now(UTC)).total_seconds()
    assert 115 <= wait <= 121


async def test_unknown_type_is_retried_with_asynq_error(
    queue_client: QueueClient, inspector: Inspector, queue_server: ServerRunner
) -> None:
    info = await queue_client.enqueue("nobody:handles", b"")
    async with queue_server({}):
        await wait_until(lambda: _state_is(inspector, info.id, TaskState.RETRY))
    got = await inspector.get_task("default", info.id)
    assert got.last_error == 'handler not found for task "nobody:handles"'


async def test_scheduled_task_is_forwarded_when_due(
    queue_client: QueueClient, inspector: Inspector, queue_server: ServerRunner
) -> None:
    ran = asyncio.Event()

    async def handler(task: Task) -> None:
        ran.set()

    info = await queue_client.enqueue("later", b"", process_at=datetime.now(UTC) + timedelta(seconds=1.5))
    assert info.state is TaskState.SCHEDULED
    async with queue_server({"later": handler}):
        await asyncio.sleep(0.5)
        assert not ran.is_set()
        await asyncio.wait_for(ran.wait(), 5)


async def test_timeout_cancels_handler_and_retries(
    queue_client: QueueClient, inspector: Inspector, queue_server: ServerRunner
) -> None:
    cancelled = asyncio.Event()

    async def slow(task: Task) -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    info = await queue_client.enqueue("slow", b"", timeout=1)
    async with queue_server({"slow": slow}):
        await asyncio.wait_for(cancelled.wait(), 5)
        await wait_until(lambda: _state_is(inspector, info.id, TaskState.RETRY))
    assert (await inspector.get_task("default", info.id)).last_error == "context deadline exceeded"


async def test_cancel_active_task(
    redis_client: aioredis.Redis, queue_client: QueueClient, inspector: Inspector, queue_server: ServerRunner
) -> None:
    started = asyncio.Event()

    async def slow(task: Task) -> None:
        started.set()
        await asyncio.sleep(30)

    info = await queue_client.enqueue("slow", b"")
    async with queue_server({"slow": slow}):
        await asyncio.wait_for(started.wait(), 5)
        # No wait for the listener: a server takes tasks only once it listens for their cancels.
        assert await _cancel_subscribers(redis_client) == 1
        await inspector.cancel_task(info.id)
        await wait_until(lambda: _state_is(inspector, info.id, TaskState.ARCHIVED))
    assert (await inspector.get_task("default", info.id)).last_error == "context canceled"


async def test_a_server_takes_tasks_only_once_it_listens_for_cancels(
    redis_server: RedisServer,
    redis_client: aioredis.Redis,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A Redis user that may not subscribe to the cancel channel: the listener keeps failing, so the
    # server must hold its fetcher back for the whole wait (then warn and take tasks anyway).
    await redis_client.acl_setuser(
        "deaf", enabled=True, nopass=True, keys=["*"], channels=[TASK_EVENTS_CHANNEL], commands=["+@all"]
    )
    deaf = aioredis.Redis.from_url(redis_server.url.replace("redis://", "redis://deaf:@"))
    monkeypatch.setattr(server_module, "CANCEL_LISTENER_WAIT_SECONDS", 1.0)
    await QueueClient(deaf).enqueue("job", b"")
    ran_after: list[float] = []
    started = time.monotonic()

    async def handler(task: Task) -> None:
        ran_after.append(time.monotonic() - started)

    try:
        async with running_server(deaf, {"job": handler}):
            await wait_until(lambda: ran_after, what="the task ran")
    finally:
        await deaf.aclose()
        await redis_client.acl_deluser("deaf")
    assert ran_after[0] >= 1.0
    assert "cancel listener not subscribed after 1s" in caplog.text


async def _cancel_subscribers(redis_client: aioredis.Redis) -> int:
    """Listeners on the cancel channel (a cancel published before one subscribes is not heard)."""
    counts = await redis_client.pubsub_numsub(CANCEL_CHANNEL)
    return int(counts[0][1])


async def _events_until(pubsub: PubSub, count: int) -> list[dict[str, Any]]:
    """Read task events from a subscribed pubsub until ``count`` arrived."""
    events: list[dict[str, Any]] = []

    async def enough() -> bool:
        msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1)
        if msg:
            events.append(json.loads(msg["data"]))
        return len(events) >= count

    await wait_until(enough)
    return events


async def test_events_are_published(
    redis_client: aioredis.Redis, queue_client: QueueClient, queue_server: ServerRunner
) -> None:
    pubsub = redis_client.pubsub()
    await pubsub.subscribe(TASK_EVENTS_CHANNEL)

    async def ok(task: Task) -> None:
        return None

    info = await queue_client.enqueue("ok", b"")
    async with queue_server({"ok": ok}, publish_events=True):
        events = await _events_until(pubsub, 2)
    await pubsub.aclose()
    assert [(e["task_id"], e["type"], e["state"]) for e in events] == [
        (info.id, "ok", "active"),
        (info.id, "ok", "succeeded"),
    ]


async def test_many_concurrent_result_writes_share_a_small_pool(redis_server: RedisServer) -> None:
    """500 handlers writing results at once through a 16-connection pool: writes are coalesced."""
    client = aioredis.Redis.from_url(redis_server.url, max_connections=16)
    try:
        await client.flushall()
        gate = asyncio.Event()
        started = 0

        async def write(task: Task) -> None:
            nonlocal started
            started += 1
            await gate.wait()
            await task.write_result(b"r" + task.payload)

        infos = await QueueClient(client).enqueue_many(
            [EnqueueRequest("w", f"{i}".encode(), retention=600) for i in range(500)]
        )
        inspector = Inspector(client)
        async with running_server(client, {"w": write}, concurrency=500):
            await wait_until(lambda: started == 500)
            gate.set()

            async def all_completed() -> bool:
                return (await inspector.queue_stats("default")).completed == 500

            await wait_until(all_completed, within=20)
        stats = await inspector.queue_stats("default")
        assert (stats.retry, stats.failed_total) == (0, 0)
        sample = await inspector.get_task("default", infos[7].id)  # type: ignore[union-attr]
        assert sample.result == b"r7"
    finally:
        await client.aclose()


async def test_failure_events_carry_the_error(
    redis_client: aioredis.Redis, queue_client: QueueClient, queue_server: ServerRunner
) -> None:
    pubsub = redis_client.pubsub()
    await pubsub.subscribe(TASK_EVENTS_CHANNEL)

    async def bad(task: Task) -> None:
        raise ValueError(f"bad {task.retried}")

    info = await queue_client.enqueue("bad", b"", max_retry=1, retention=60)
    async with queue_server({"bad": bad}, publish_events=True, retry_delay=lambda n, e, t: 0.0):
        events = await _events_until(pubsub, 4)
    await pubsub.aclose()
    assert {e["task_id"] for e in events} == {info.id}
    assert [(e["state"], e["retried"], e["error"]) for e in events] == [
        ("active", 0, None),
        ("retry", 1, "bad 0"),
        ("active", 1, None),
        ("archived", 1, "bad 1"),
    ]


async def test_cancelled_task_can_follow_asynq_and_retry(
    queue_client: QueueClient, inspector: Inspector, queue_server: ServerRunner
) -> None:
    started = asyncio.Event()

    async def slow(task: Task) -> None:
        started.set()
        await asyncio.sleep(30)

    info = await queue_client.enqueue("slow", b"")
    async with queue_server({"slow": slow}, cancelled_tasks_archive=False, retry_delay=lambda n, e, t: 600.0):
        await asyncio.wait_for(started.wait(), 5)
        await asyncio.sleep(0.2)
        await inspector.cancel_task(info.id)
        await wait_until(lambda: _state_is(inspector, info.id, TaskState.RETRY))
    got = await inspector.get_task("default", info.id)
    assert (got.retried, got.last_error) == (1, "context canceled")


async def test_concurrent_enqueues_are_coalesced_and_errors_reach_their_caller(
    redis_client: aioredis.Redis, queue_client: QueueClient
) -> None:
    await queue_client.enqueue("t", b"", task_id="taken")
    await redis_client.config_resetstat()
    results = await asyncio.gather(
        *(queue_client.enqueue("t", f"{i}".encode()) for i in range(300)),
        queue_client.enqueue("t", b"dup", task_id="taken"),
        queue_client.enqueue("", b"invalid"),
        return_exceptions=True,
    )
    infos, conflict, invalid = results[:300], results[300], results[301]
    assert isinstance(conflict, TaskIdConflictError) and isinstance(invalid, InvalidTaskError)
    assert len({i.id for i in infos}) == 300  # type: ignore[union-attr]
    assert [i.payload for i in infos] == [f"{i}".encode() for i in range(300)]  # type: ignore[union-attr]
    scripts_run = (await redis_client.info("commandstats"))["cmdstat_evalsha"]["calls"]
    assert scripts_run <= 3  # 300 callers, a handful of round trips
    assert await redis_client.llen("asynq:{default}:pending") == 301
