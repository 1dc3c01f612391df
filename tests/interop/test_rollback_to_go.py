"""The way back: our worker dies with kill -9 holding leases, and a Go asynq server recovers its tasks.

This checks our lease bookkeeping from the other side: asynq's recoverer only finds tasks whose
`asynq:{q}:lease` score (Unix seconds) lies more than 30 s in the past, and the Go Inspector marks such
active tasks as orphaned. If our layout differed, the tasks would stay active forever under Go.
"""

from __future__ import annotations

import asyncio
import sys
import time

import redis.asyncio as aioredis

from tests.interop.conftest import AsynqProbe, eventually

TASKS = 20

# Our Server in its own process, so it can die by SIGKILL; lease_seconds=1 keeps the test short.
WORKER = """
import asyncio, sys
import redis.asyncio as aioredis
from sytq.queue import Server, ServerConfig

async def main(url: str) -> None:
    async def hold(task):
        print(task.id, flush=True)
        await asyncio.Event().wait()

    config = ServerConfig(queues={"back": 1}, concurrency=50, lease_seconds=1)
    await Server(aioredis.Redis.from_url(url), config, {"hold": hold}).run(install_signal_handlers=False)

asyncio.run(main(sys.argv[1]))
"""


async def test_go_server_recovers_tasks_of_our_killed_worker(
    asynqprobe: AsynqProbe, redis_client: aioredis.Redis
) -> None:
    tasks = await asynqprobe.enqueue_ok(
        *({"type": "hold", "payload": f"h{i}".encode(), "queue": "back"} for i in range(TASKS))
    )
    worker = await asyncio.create_subprocess_exec(
        sys.executable, "-c", WORKER, asynqprobe.redis_url, stdout=asyncio.subprocess.PIPE
    )
    assert worker.stdout is not None
    held = set()
    try:
        while len(held) < TASKS:
            line = await asyncio.wait_for(worker.stdout.readline(), 20)
            assert line, "our worker exited before taking every task"
            held.add(line.decode().strip())
    finally:
        worker.kill()
        await worker.wait()
    assert held == {t["id"] for t in tasks}

    leases = await redis_client.zrange("asynq:{back}:lease", 0, -1, withscores=True)
    assert sorted(member.decode() for member, _ in leases) == sorted(held)
    lease_end = max(score for _, score in leases)
    assert lease_end <= time.time() + 2, "a 1 s lease must not be extended past the worker's death"

    # Once the lease has run out, Go's Inspector lists the tasks as orphaned (only ListActiveTasks says so).
    await asyncio.sleep(max(0.0, lease_end + 1 - time.time()))
    active = await asynqprobe.list("back", "active")
    assert sorted(t["id"] for t in active) == sorted(held)
    assert all(t["is_orphaned"] for t in active)

    # asynq's recoverer takes tasks whose lease ended more than 30 s ago (clock-skew margin).
    await asyncio.sleep(max(0.0, lease_end + 31 - time.time()))
    async with asynqprobe.serve("--queues", "back=1", "--count", str(TASKS), "--concurrency", "20") as go:
        await go.wait_for(lambda events: any(e["event"] == "stopped" for e in events), within=30)
    runs = go.handled("ok")
    assert sorted(e["id"] for e in runs) == sorted(held)
    assert all(e["retried"] == 1 for e in runs)  # the lease expiry counted as one failed attempt
    stats = await eventually(lambda: _drained(asynqprobe))
    assert (stats["processed"], stats["failed"]) == (2 * TASKS, TASKS)


async def _drained(asynqprobe: AsynqProbe) -> dict[str, int] | None:
    stats = await asynqprobe.stats("back")
    return stats if stats["size"] == 0 else None
