"""Details of the Redis layout that neither Inspector shows but asynq's own scripts rely on, checked by
letting both engines write the same thing and comparing, plus the Go-set timeout and deadline fields
driving our server."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

import redis.asyncio as aioredis

from sytq.queue import Inspector, TaskState
from tests.interop.conftest import AsynqProbe, eventually, our_server

NINETY_DAYS = 90 * 24 * 3600  # asynq's statsTTL for the daily processed/failed counters


async def test_completed_scores_and_daily_counters_match_asynqs(
    asynqprobe: AsynqProbe, redis_client: aioredis.Redis
) -> None:
    # Each engine completes one task with retention and fails one, in its own queue.
    specs = [
        {"type": "ok", "payload": b"a", "queue": "by-ours", "retention": 600},
        {"type": "bad", "payload": b"b", "queue": "by-ours", "max_retry": 0},
        {"type": "ok", "payload": b"a", "queue": "by-go", "retention": 600},
        {"type": "bad", "payload": b"b", "queue": "by-go", "max_retry": 0},
    ]
    ours_ok, _, go_ok, _ = await asynqprobe.enqueue_ok(*specs)

    async def handle(task: Any) -> None:
        if task.type == "bad":
            raise RuntimeError("bad task")

    inspector = Inspector(redis_client)
    async with our_server(redis_client, {"ok": handle, "bad": handle}, queues={"by-ours": 1}):
        await eventually(lambda: _stats_show(inspector, "by-ours", completed=1, archived=1))
    async with asynqprobe.serve("--queues", "by-go=1", "--fail", "always", "--fail-types", "bad") as go:
        await go.wait_for(lambda events: len(go.handled()) >= 2)

    day = datetime.now(UTC).strftime("%Y-%m-%d")
    for queue, task in (("by-ours", ours_ok), ("by-go", go_ok)):
        info = await inspector.get_task(queue, task["id"])
        assert info.completed_at is not None
        # asynq's janitor deletes completed tasks by this score: completed_at + retention, in seconds.
        score = await redis_client.zscore(f"asynq:{{{queue}}}:completed", task["id"])
        assert score == int(info.completed_at.timestamp()) + 600, queue
        for counter in ("processed", "failed"):
            key = f"asynq:{{{queue}}}:{counter}:{day}"
            assert await redis_client.get(key) == (b"2" if counter == "processed" else b"1"), key
            ttl = await redis_client.ttl(key)
            assert NINETY_DAYS - 3600 <= ttl <= NINETY_DAYS + 24 * 3600, (key, ttl)
            assert await redis_client.ttl(f"asynq:{{{queue}}}:{counter}") == -1  # totals never expire


async def _stats_show(inspector: Inspector, queue: str, **expected: int) -> bool:
    stats = await inspector.queue_stats(queue)
    return all(getattr(stats, name) == value for name, value in expected.items())


async def test_go_set_timeout_and_deadline_bound_our_handler(
    asynqprobe: AsynqProbe, redis_client: aioredis.Redis
) -> None:
    timed, dated = await asynqprobe.enqueue_ok(
        {"type": "slow", "payload": b"t", "timeout": 1, "max_retry": 0},
        {"type": "slow", "payload": b"d", "deadline": time.time() + 1.5, "max_retry": 0},
    )
    stopped: dict[str, float] = {}
    started = time.monotonic()

    async def slow(task: Any) -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            stopped[task.id] = time.monotonic() - started
            raise

    inspector = Inspector(redis_client)
    async with our_server(redis_client, {"slow": slow}):
        await eventually(lambda: len(stopped) == 2, within=15)
        for task in (timed, dated):
            await eventually(lambda t=task: _state_is(inspector, t["id"], TaskState.ARCHIVED))
    assert stopped[timed["id"]] < 5 and stopped[dated["id"]] < 5, stopped
    for task in (timed, dated):
        go_view = await asynqprobe.task("default", task["id"])
        assert go_view["state"] == "archived" and go_view["last_err"], go_view


async def _state_is(inspector: Inspector, task_id: str, state: TaskState) -> bool:
    return (await inspector.get_task("default", task_id)).state == state
