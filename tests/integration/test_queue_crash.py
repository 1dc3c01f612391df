"""kill -9 of a worker holding hundreds of active tasks: every task completes after lease
recovery, none is lost, and none starts again while the dead worker's lease is still valid."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from sytq.queue import EnqueueRequest, Inspector, QueueClient, Task
from tests.harness.queue_fixtures import running_server, wait_until
from tests.harness.services import RedisServer

pytestmark = pytest.mark.slow  # end to end: seconds each; left out of `make unit`

TASKS = 300
LEASE_SECONDS = 3.0
REPO = Path(__file__).resolve().parents[2]


async def test_kill_minus_nine_loses_nothing(redis_server: RedisServer, redis_client: aioredis.Redis) -> None:
    queue = QueueClient(redis_client)
    infos = await queue.enqueue_many(
        [EnqueueRequest("crash:hold", f"{i}".encode(), max_retry=3) for i in range(TASKS)]
    )
    ids = {info.id for info in infos}  # type: ignore[union-attr]
    worker = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.integration.queue_crash_worker",
        redis_server.url,
        str(TASKS + 50),
        str(LEASE_SECONDS),
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:

        async def all_started() -> bool:
            assert worker.returncode is None, "crash worker exited early"
            return int(await redis_client.scard("crashtest:started")) == TASKS

        await wait_until(all_started, within=30)
        await asyncio.sleep(LEASE_SECONDS)  # at least one lease extension happened
    finally:
        worker.send_signal(signal.SIGKILL)
        await asyncio.wait_for(worker.wait(), 10)
    killed_at = time.time()

    leases = dict(await redis_client.zrange("asynq:{default}:lease", 0, -1, withscores=True))
    assert {k.decode() for k in leases} == ids  # every task still held by the dead worker
    assert await redis_client.llen("asynq:{default}:active") == TASKS
    lease_end = {k.decode(): score for k, score in leases.items()}
    assert min(lease_end.values()) > killed_at  # the leases were still valid at the kill

    started: dict[str, list[float]] = {}

    async def finish(task: Task) -> None:
        started.setdefault(task.id, []).append(time.time())

    async with running_server(
        redis_client,
        {"crash:hold": finish},
        concurrency=100,
        lease_seconds=LEASE_SECONDS,
        recover_interval=0.2,
        lease_grace=0.5,
        retry_delay=lambda n, e, t: 0.0,
    ):

        async def drained() -> bool:
            stats = await Inspector(redis_client).queue_stats("default")
            return stats.processed_total == 2 * TASKS and stats.size == 0

        await wait_until(drained, within=60)

    assert set(started) == ids, "lost tasks"
    assert all(len(times) == 1 for times in started.values()), "a task ran twice after recovery"
    early = [tid for tid, times in started.items() if times[0] < lease_end[tid]]
    assert early == [], f"{len(early)} tasks restarted while the dead worker's lease was valid"
    stats = await Inspector(redis_client).queue_stats("default")
    assert (stats.failed_total, stats.active, stats.archived) == (TASKS, 0, 0)
