"""A worker process for the kill -9 crash test: takes tasks and holds them until it is killed.

Usage: python -m tests.integration.queue_crash_worker REDIS_URL CONCURRENCY LEASE_SECONDS
Each started task is recorded in the Redis set ``crashtest:started`` so the test knows when to kill.
"""

from __future__ import annotations

import asyncio
import sys

import redis.asyncio as aioredis

from sytq.queue import Server, ServerConfig, Task


async def main(url: str, concurrency: int, lease_seconds: float) -> None:
    client = aioredis.Redis.from_url(url)

    async def hold(task: Task) -> None:
        await client.sadd("crashtest:started", task.id)
        await asyncio.sleep(3600)

    config = ServerConfig(concurrency=concurrency, lease_seconds=lease_seconds, fetch_batch=100)
    await Server(client, config, {"crash:hold": hold}).run()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3])))
