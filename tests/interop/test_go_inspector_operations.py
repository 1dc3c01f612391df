"""Operator actions taken with Go's Inspector (what `asynq` CLI and asynqmon do) act on our engine:
pause/unpause stops/starts our server, cancel reaches our running handler over `asynq:cancel`, and
run/archive/delete move tasks our client wrote."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis.asyncio as aioredis

from sytq.queue import Inspector, QueueClient, TaskNotFoundError, TaskState
from tests.interop.conftest import AsynqProbe, eventually, our_server


async def test_go_pause_and_unpause_control_our_server(
    asynqprobe: AsynqProbe, redis_client: aioredis.Redis
) -> None:
    ran: list[str] = []

    async def handle(task: Any) -> None:
        ran.append(task.id)

    async with our_server(redis_client, {"work": handle}, queues={"ctl": 1}):
        assert await asynqprobe.op("pause", "ctl") == {"ok": "pause"}
        (task,) = await asynqprobe.enqueue_ok({"type": "work", "payload": b"w", "queue": "ctl"})
        await asyncio.sleep(1.5)  # several of our fetch cycles: a paused queue must not be served
        assert ran == []
        assert (await asynqprobe.stats("ctl"))["paused"] is True
        assert (await Inspector(redis_client).queue_stats("ctl")).paused
        assert await asynqprobe.op("unpause", "ctl") == {"ok": "unpause"}
        await eventually(lambda: ran)
    assert ran == [task["id"]]


async def test_go_cancel_reaches_our_running_handler(
    asynqprobe: AsynqProbe, redis_client: aioredis.Redis
) -> None:
    running, cancelled = asyncio.Event(), asyncio.Event()

    async def handle(task: Any) -> None:
        running.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    inspector = Inspector(redis_client)
    task = await QueueClient(redis_client).enqueue("slow", b"s", max_retry=3)
    async with our_server(redis_client, {"slow": handle}):
        await asyncio.wait_for(running.wait(), 10)
        assert (await asynqprobe.task("default", task.id))["state"] == "active"
        # Go's CancelProcessing publishes the id on asynq:cancel; our server must be subscribed.
        assert await asynqprobe.op("cancel", "default", task.id) == {"ok": "cancel"}
        await asyncio.wait_for(cancelled.wait(), 10)
        info = await eventually(lambda: _not_active(inspector, task.id))
    # asynq retries a cancelled task; ours archives it (docs/queue.md). Either way it left active,
    # carries the cancellation as its error, and Go reads the same.
    assert info.state in (TaskState.ARCHIVED, TaskState.RETRY)
    go_view = await asynqprobe.task("default", task.id)
    assert (go_view["state"], go_view["last_err"]) == (str(info.state), info.last_error)
    assert info.last_error


async def _not_active(inspector: Inspector, task_id: str) -> Any:
    info = await inspector.get_task("default", task_id)
    return info if info.state != TaskState.ACTIVE else None


async def test_go_run_archive_delete_move_tasks_our_client_wrote(
    asynqprobe: AsynqProbe, redis_client: aioredis.Redis
) -> None:
    client, inspector = QueueClient(redis_client), Inspector(redis_client)
    scheduled = await client.enqueue("x", b"1", process_in=3600)
    pending = await client.enqueue("x", b"2")
    doomed = await client.enqueue("x", b"3")

    assert await asynqprobe.op("run", "default", scheduled.id) == {"ok": "run"}
    assert (await inspector.get_task("default", scheduled.id)).state == TaskState.PENDING
    assert await asynqprobe.op("archive", "default", pending.id) == {"ok": "archive"}
    assert (await inspector.get_task("default", pending.id)).state == TaskState.ARCHIVED
    assert await asynqprobe.op("delete", "default", doomed.id) == {"ok": "delete"}
    with pytest.raises(TaskNotFoundError):
        await inspector.get_task("default", doomed.id)

    stats = await inspector.queue_stats("default")
    assert (stats.pending, stats.scheduled, stats.archived, stats.size) == (1, 0, 1, 2)
    # And the other way round: our Inspector requeues the archived task, Go sees it pending.
    await inspector.run_task("default", pending.id)
    assert (await asynqprobe.task("default", pending.id))["state"] == "pending"
