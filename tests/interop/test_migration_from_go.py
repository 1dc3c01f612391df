"""Switching a live Go asynq deployment to our server loses nothing (issue 2, interop check 4).

A Go deployment leaves tasks in every state: pending (two queues), scheduled, retry, archived, and active
under the lease of a Go worker that is killed with SIGKILL. Our server then takes over the same Redis and
every task runs (archived ones after the operator requeues them, as with `asynq task run`).
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis

from sytq.queue import Inspector, TaskState
from tests.interop.conftest import AsynqProbe, eventually, our_server


async def test_tasks_in_every_state_left_by_go_all_run_on_our_server(
    asynqprobe: AsynqProbe, redis_client: aioredis.Redis
) -> None:
    # Retry and archived tasks come from a real Go server failing them.
    failing = await asynqprobe.enqueue_ok(
        *({"type": "mig:retry", "payload": f"r{i}".encode(), "max_retry": 5} for i in range(4)),
        *({"type": "mig:archive", "payload": f"a{i}".encode(), "max_retry": 0} for i in range(3)),
    )
    async with asynqprobe.serve("--fail", "always", "--retry-delay", "2s", "--check-interval", "1h") as go:
        await go.wait_for(lambda events: len(go.handled()) >= len(failing))
        await go.stop()

    # Active tasks: a Go worker holds them under its lease and dies with kill -9.
    active = await asynqprobe.enqueue_ok(
        *({"type": "mig:active", "payload": f"x{i}".encode(), "queue": "busy"} for i in range(20))
    )
    async with asynqprobe.serve("--queues", "busy=1", "--block", "--concurrency", "50") as go:
        await go.wait_for(lambda events: len(go.handled()) >= len(active))
        await go.kill()

    pending = await asynqprobe.enqueue_ok(
        *({"type": "mig:pending", "payload": f"p{i}".encode()} for i in range(30)),
        *({"type": "mig:pending", "payload": f"l{i}".encode(), "queue": "low"} for i in range(10)),
    )
    scheduled = await asynqprobe.enqueue_ok(
        *({"type": "mig:scheduled", "payload": f"s{i}".encode(), "process_in": 2} for i in range(5))
    )

    before = {q: await asynqprobe.stats(q) for q in ("default", "busy", "low")}
    assert (before["default"]["pending"], before["default"]["scheduled"]) == (30, 5)
    assert (before["default"]["retry"], before["default"]["archived"]) == (4, 3)
    assert (before["busy"]["active"], before["low"]["pending"]) == (20, 10)

    everything = failing + active + pending + scheduled
    runs: dict[str, list[bytes]] = {}

    async def handle(task: Any) -> None:
        runs.setdefault(task.id, []).append(task.payload)

    handlers = dict.fromkeys(
        ("mig:retry", "mig:archive", "mig:active", "mig:pending", "mig:scheduled"), handle
    )
    inspector = Inspector(redis_client)
    config = {"retry_delay": lambda n, err, task: 0.5}
    async with our_server(redis_client, handlers, queues={"default": 3, "busy": 2, "low": 1}, **config):
        # Archived tasks stay archived until an operator requeues them (asynq semantics, nothing automatic).
        archived = [t for t in failing if t["type"] == "mig:archive"]
        for task in archived:
            assert (await inspector.get_task("default", task["id"])).state == TaskState.ARCHIVED
            await inspector.run_task("default", task["id"])
        # The dead Go worker's leases expire after asynq's 30 s; recovery may add one retry delay.
        await eventually(lambda: len(runs) == len(everything), within=90, interval=0.5)

    assert sorted(runs) == sorted(t["id"] for t in everything), "a task left by Go was lost"
    for task in everything:
        assert runs[task["id"]][0] == task["payload"]
    assert all(len(payloads) == 1 for payloads in runs.values()), {
        k: v for k, v in runs.items() if len(v) > 1
    }
    for queue in ("default", "busy", "low"):
        stats = await asynqprobe.stats(queue)
        assert stats["size"] == 0, (queue, stats)
