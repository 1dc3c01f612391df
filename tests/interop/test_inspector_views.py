"""Both Inspectors read what the other side wrote (issue 2, interop check 3).

Each test builds one queue holding a task in every state, written entirely by one side, then checks the
other side's Inspector: exact queue stats, every TaskInfo field, and the live server / worker list that
`asynq server ls` shows.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from datetime import UTC, datetime
from typing import Any

import redis.asyncio as aioredis

from sytq.queue import Inspector, QueueClient, SkipRetry, TaskState
from tests.interop.conftest import AsynqProbe, assert_same_task, eventually, our_server

HOUR = 3600


def _one_of_each_state(active: int) -> dict[str, Any]:
    """Stats of the paused queue both tests build: 3 pending, 2 scheduled, 1 retry/archived/completed;
    3 attempts ran (ok, skip, retry), 2 of them failed."""
    return {
        "pending": 3,
        "active": active,
        "scheduled": 2,
        "retry": 1,
        "archived": 1,
        "completed": 1,
        "processed": 3,
        "failed": 2,
        "processed_total": 3,
        "failed_total": 2,
        "paused": True,
    }


async def test_go_inspector_reads_every_state_our_code_wrote(
    asynqprobe: AsynqProbe, redis_client: aioredis.Redis
) -> None:
    client = QueueClient(redis_client)
    inspector = Inspector(redis_client)
    release = asyncio.Event()

    async def handle(task: Any) -> None:
        if task.type == "ok":
            await task.write_result(b"done:" + task.payload)
        elif task.type == "skip":
            raise SkipRetry("cannot ever work")
        elif task.type == "later":
            raise RuntimeError("later please")
        else:
            await release.wait()

    started = time.time()
    ok = await client.enqueue("ok", b"1", queue="views", retention=HOUR, timeout=120)
    skip = await client.enqueue("skip", b"2", queue="views", max_retry=5)
    later = await client.enqueue("later", b"3", queue="views", max_retry=7)
    block = await client.enqueue("block", b"4", queue="views", deadline=_at(started + HOUR))
    handlers = {name: handle for name in ("ok", "skip", "later", "block")}
    config = {"retry_delay": lambda n, err, task: float(HOUR)}
    async with our_server(redis_client, handlers, queues={"views": 1}, concurrency=4, **config):
        await eventually(lambda: _state_is(inspector, "views", later.id, TaskState.RETRY))
        await eventually(lambda: _state_is(inspector, "views", skip.id, TaskState.ARCHIVED))
        await eventually(lambda: _state_is(inspector, "views", ok.id, TaskState.COMPLETED))
        await inspector.pause_queue("views")
        pending = [await client.enqueue("ok", f"p{i}".encode(), queue="views") for i in range(3)]
        scheduled = [
            await client.enqueue("ok", f"s{i}".encode(), queue="views", process_in=HOUR) for i in range(2)
        ]

        stats = await asynqprobe.stats("views")
        expected = _one_of_each_state(active=1)
        assert {key: stats[key] for key in expected} == expected
        assert stats["size"] == 9  # asynq's Size counts completed tasks too (despite its doc comment)

        every_id = [t.id for t in (ok, skip, later, block, *pending, *scheduled)]
        lookups = (await asynqprobe.inspect("views", every_id))["tasks"]
        go = {task_id: lookup["task"] for task_id, lookup in lookups.items()}  # KeyError = Go cannot read it
        assert (go[ok.id]["state"], go[ok.id]["result"], go[ok.id]["retention"], go[ok.id]["timeout"]) == (
            "completed",
            b"done:1",
            HOUR,
            120,
        )
        assert started - 1 <= go[ok.id]["completed_at"] <= time.time() + 1
        assert (go[skip.id]["state"], go[skip.id]["retried"], go[skip.id]["max_retry"]) == ("archived", 0, 5)
        assert "cannot ever work" in go[skip.id]["last_err"]
        assert started - 1 <= go[skip.id]["last_failed_at"] <= time.time() + 1
        assert (go[later.id]["state"], go[later.id]["retried"], go[later.id]["max_retry"]) == ("retry", 1, 7)
        assert "later please" in go[later.id]["last_err"]
        assert abs(go[later.id]["next_process_at"] - (go[later.id]["last_failed_at"] + HOUR)) <= 1
        assert (go[block.id]["state"], go[block.id]["deadline"]) == ("active", int(started + HOUR))
        assert all(go[t.id]["state"] == "pending" for t in pending)
        assert all(go[t.id]["state"] == "scheduled" for t in scheduled)
        for task_id, go_view in go.items():
            assert_same_task(await inspector.get_task("views", task_id), go_view)

        # Go's list views agree with ours, page by page.
        (go_active,) = await asynqprobe.list("views", "active")
        assert not go_active["is_orphaned"], "our live server must keep its lease fresh"
        for state in ("pending", "scheduled", "retry", "archived", "completed", "active"):
            go_ids = [t["id"] for t in await asynqprobe.list("views", state)]
            our_ids = [t.id for t in await inspector.list_tasks("views", TaskState(state), page_size=100)]
            assert go_ids == our_ids, state

        # `asynq server ls`: our live server and the worker holding the blocked task.
        (listed,) = await eventually(lambda: _go_sees_workers(asynqprobe), within=15)
        assert (listed["host"], listed["pid"]) == (socket.gethostname(), os.getpid())
        assert (listed["concurrency"], listed["queues"], listed["strict_priority"]) == (
            4,
            {"views": 1},
            False,
        )
        assert listed["status"] == "active"
        assert started - 1 <= listed["started"] <= time.time() + 1
        (worker,) = listed["active_workers"]
        assert (worker["task_id"], worker["task_type"], worker["queue"], worker["payload"]) == (
            block.id,
            "block",
            "views",
            b"4",
        )
        assert worker["started"] >= int(started)
        release.set()
        await eventually(lambda: _state_is_gone(inspector, "views", block.id))
    # A stopped server removes its entry, as asynq does on shutdown.
    assert await asynqprobe.servers() == []


async def _go_sees_workers(asynqprobe: AsynqProbe) -> list[dict[str, Any]]:
    servers = await asynqprobe.servers()
    return servers if servers and all(s["active_workers"] for s in servers) else []


def _at(unix: float) -> datetime:
    return datetime.fromtimestamp(int(unix), UTC)


async def _state_is(inspector: Inspector, queue: str, task_id: str, state: TaskState) -> bool:
    return (await inspector.get_task(queue, task_id)).state == state


async def _servers_with_workers(inspector: Inspector) -> list[Any]:
    servers = await inspector.servers()
    return servers if servers and all(s.workers for s in servers) else []


async def _state_is_gone(inspector: Inspector, queue: str, task_id: str) -> bool:
    return all(t.id != task_id for t in await inspector.list_tasks(queue, TaskState.ACTIVE, page_size=100))


async def test_our_inspector_reads_every_state_go_wrote(
    asynqprobe: AsynqProbe, redis_client: aioredis.Redis
) -> None:
    inspector = Inspector(redis_client)
    started = time.time()
    (skip,) = await asynqprobe.enqueue_ok(
        {"type": "g:skip", "payload": b"s", "queue": "gviews", "max_retry": 4}
    )
    async with asynqprobe.serve("--queues", "gviews=1", "--types", "g:skip", "--fail", "skip") as go:
        await go.wait_for(lambda events: len(go.handled()) >= 1)
    (retry,) = await asynqprobe.enqueue_ok(
        {"type": "g:retry", "payload": b"r", "queue": "gviews", "max_retry": 6}
    )
    async with asynqprobe.serve(
        "--queues", "gviews=1", "--types", "g:retry", "--fail", "always", "--retry-delay", "1h"
    ) as go:
        await go.wait_for(lambda events: len(go.handled()) >= 1)
    (done,) = await asynqprobe.enqueue_ok(
        {"type": "g:ok", "payload": b"o", "queue": "gviews", "retention": HOUR, "timeout": 90}
    )
    async with asynqprobe.serve("--queues", "gviews=1", "--types", "g:ok", "--count", "1") as go:
        await go.wait_for(lambda events: any(e["event"] == "stopped" for e in events))
    assert (await asynqprobe.op("pause", "gviews")) == {"ok": "pause"}
    pending = await asynqprobe.enqueue_ok(
        *({"type": "g:ok", "payload": b"p", "queue": "gviews"} for _ in range(3))
    )
    scheduled = await asynqprobe.enqueue_ok(
        *({"type": "g:ok", "payload": b"s", "queue": "gviews", "process_in": HOUR} for _ in range(2))
    )
    (active,) = await asynqprobe.enqueue_ok({"type": "g:block", "payload": b"a", "queue": "gblock"})

    async with asynqprobe.serve("--queues", "gblock=1", "--block", "--concurrency", "3") as go:
        await go.wait_for(lambda events: len(go.handled()) >= 1)

        stats = await inspector.queue_stats("gviews")
        ours = {
            "pending": stats.pending,
            "active": stats.active,
            "scheduled": stats.scheduled,
            "retry": stats.retry,
            "archived": stats.archived,
            "completed": stats.completed,
            "processed": stats.processed_today,
            "failed": stats.failed_today,
            "processed_total": stats.processed_total,
            "failed_total": stats.failed_total,
            "paused": stats.paused,
            "size": stats.size,
        }
        go_stats = await asynqprobe.stats("gviews")
        assert ours == {key: go_stats[key] for key in ours}
        assert ours == {**_one_of_each_state(active=0), "size": 8}
        block_stats = await inspector.queue_stats("gblock")
        assert (block_stats.active, block_stats.pending) == (1, 0)

        for task in (skip, retry, done, *pending, *scheduled):
            assert_same_task(
                await inspector.get_task("gviews", task["id"]), await asynqprobe.task("gviews", task["id"])
            )
        assert_same_task(
            await inspector.get_task("gblock", active["id"]), await asynqprobe.task("gblock", active["id"])
        )
        info = await inspector.get_task("gviews", done["id"])
        assert (info.state, info.result, info.retention, info.timeout) == (
            TaskState.COMPLETED,
            b"go:o",
            HOUR,
            90,
        )
        info = await inspector.get_task("gviews", retry["id"])
        assert (info.state, info.retried, info.max_retry) == (TaskState.RETRY, 1, 6)
        assert info.last_failed_at is not None and started - 1 <= info.last_failed_at.timestamp()
        info = await inspector.get_task("gviews", skip["id"])
        assert (info.state, info.retried, info.max_retry) == (TaskState.ARCHIVED, 0, 4)
        assert "gives up" in info.last_error

        # Our `servers()` lists the Go server and its busy worker (Go writes workers on its 5 s heartbeat).
        servers = await eventually(lambda: _servers_with_workers(inspector), within=15)
        (listed,) = servers
        assert (listed.pid, listed.concurrency, dict(listed.queues), listed.status) == (
            go.proc.pid,
            3,
            {"gblock": 1},
            "active",
        )
        assert [(w.task_id, w.task_type, w.queue) for w in listed.workers] == [
            (active["id"], "g:block", "gblock")
        ]
