"""Our QueueClient enqueues -> a real Go asynq server runs the tasks (issue 2, interop check 2)."""

from __future__ import annotations

import time

import redis.asyncio as aioredis

from sytq.queue import EnqueueRequest, Inspector, QueueClient, TaskState
from tests.interop.conftest import AsynqProbe

BINARY = b'\x00\xff\xfe{"prompt": "h\xc3\xa9llo"}\x80'


async def test_our_tasks_run_on_go_server_with_equal_payloads_and_results(
    asynqprobe: AsynqProbe, redis_client: aioredis.Redis
) -> None:
    client = QueueClient(redis_client)
    sent = [
        await client.enqueue("llm:chat", BINARY, retention=3600, headers={"trace": "t-1"}),
        await client.enqueue(
            "llm:process", b'{"table_name": "valuation_records", "id": 7}', queue="critical", retention=3600
        ),
        await client.enqueue("llm:chat", b"", queue="low", task_id="empty-payload", retention=3600),
    ]
    sent += await client.enqueue_many(
        [EnqueueRequest("llm:chat", f"batch {i}".encode(), queue="low", retention=3600) for i in range(5)]
    )
    async with asynqprobe.serve("--queues", "critical=6,default=3,low=1", "--count", str(len(sent))) as go:
        events = await go.wait_for(lambda events: any(e["event"] == "stopped" for e in events))

    ran = {e["id"]: e for e in events if e["event"] == "handled"}
    assert sorted(ran) == sorted(t.id for t in sent)
    inspector = Inspector(redis_client)
    for task in sent:
        event = ran[task.id]
        assert (event["type"], event["queue"], event["payload"]) == (task.type, task.queue, task.payload)
        assert (event["retried"], event["max_retry"]) == (0, 25)
        info = await inspector.get_task(task.queue, task.id)
        assert info.state == TaskState.COMPLETED
        assert info.result == b"go:" + task.payload
        assert info.completed_at is not None


async def test_our_scheduled_task_runs_on_go_server_when_due(
    asynqprobe: AsynqProbe, redis_client: aioredis.Redis
) -> None:
    enqueued_at = time.time()
    task = await QueueClient(redis_client).enqueue("later", b"tock", process_in=2)
    assert task.state == TaskState.SCHEDULED
    go_view = await asynqprobe.task("default", task.id)
    assert go_view["state"] == "scheduled"
    assert abs(go_view["next_process_at"] - (enqueued_at + 2)) <= 1.5
    async with asynqprobe.serve("--count", "1") as go:
        events = await go.wait_for(lambda events: any(e["event"] == "stopped" for e in events))
    (ran,) = [e for e in events if e["event"] == "handled"]
    assert ran["id"] == task.id
    assert ran["at_ns"] / 1e9 >= go_view["next_process_at"] - 0.05


async def test_our_failing_tasks_are_retried_and_archived_by_go_visible_in_both_inspectors(
    asynqprobe: AsynqProbe, redis_client: aioredis.Redis
) -> None:
    client = QueueClient(redis_client)
    started = time.time()
    flaky = await client.enqueue("flaky", b"f", max_retry=3, retention=3600)
    async with asynqprobe.serve("--fail", "first", "--count", "1") as go:
        await go.wait_for(lambda events: any(e["event"] == "stopped" for e in events))
    doomed = await client.enqueue("doomed", b"d", max_retry=1)
    async with asynqprobe.serve("--fail", "always", "--fail-types", "doomed", "--types", "doomed") as go:
        await go.wait_for(lambda events: len(go.handled()) >= 2)
        await go.stop()

    inspector = Inspector(redis_client)
    ours_flaky = await inspector.get_task("default", flaky.id)
    go_flaky = await asynqprobe.task("default", flaky.id)
    assert ours_flaky.state == TaskState.COMPLETED and go_flaky["state"] == "completed"
    assert ours_flaky.retried == go_flaky["retried"] == 1
    assert "fails first attempt" in ours_flaky.last_error
    assert ours_flaky.last_error == go_flaky["last_err"]

    ours_doomed = await inspector.get_task("default", doomed.id)
    go_doomed = await asynqprobe.task("default", doomed.id)
    assert ours_doomed.state == TaskState.ARCHIVED and go_doomed["state"] == "archived"
    assert ours_doomed.retried == go_doomed["retried"] == 1
    assert ours_doomed.max_retry == go_doomed["max_retry"] == 1
    assert "always fails" in ours_doomed.last_error and ours_doomed.last_error == go_doomed["last_err"]
    assert ours_doomed.last_failed_at is not None
    assert int(ours_doomed.last_failed_at.timestamp()) == go_doomed["last_failed_at"]
    assert started - 1 <= go_doomed["last_failed_at"] <= time.time() + 1

    ours_stats = await inspector.queue_stats("default")
    go_stats = await asynqprobe.stats("default")
    # flaky: 2 attempts (1 failed); doomed: 2 attempts (both failed).
    assert (go_stats["processed"], go_stats["failed"], go_stats["archived"], go_stats["completed"]) == (
        4,
        3,
        1,
        1,
    )
    assert (ours_stats.processed_today, ours_stats.failed_today) == (4, 3)
    assert (ours_stats.archived, ours_stats.completed) == (1, 1)


async def test_our_unique_locks_and_task_ids_bind_the_go_client(
    asynqprobe: AsynqProbe, redis_client: aioredis.Redis
) -> None:
    client = QueueClient(redis_client)
    locked = await client.enqueue("once", b"same", unique_for=300)
    named = await client.enqueue("order", b"1", task_id="order-7", queue="orders")
    duplicate, conflict = await asynqprobe.enqueue(
        {"type": "once", "payload": b"same", "unique_for": 300},
        {"type": "order", "payload": b"2", "task_id": "order-7", "queue": "orders"},
    )
    assert duplicate["kind"] == "duplicate_task", duplicate
    assert conflict["kind"] == "task_id_conflict", conflict
    # A Go server finishing our unique task releases our lock for the Go client.
    async with asynqprobe.serve("--queues", "default=1,orders=1", "--count", "2") as go:
        await go.wait_for(lambda events: any(e["event"] == "stopped" for e in events))
    assert sorted(e["id"] for e in go.handled("ok")) == sorted([locked.id, named.id])
    (again,) = await asynqprobe.enqueue({"type": "once", "payload": b"same", "unique_for": 300})
    assert "task" in again, again
