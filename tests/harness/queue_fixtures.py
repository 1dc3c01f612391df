"""Fixtures for the queue engine's tests: client, inspector and a running Server on the test Redis."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import pytest
import redis.asyncio as aioredis

from sytq.queue import Handler, Inspector, QueueClient, Server, ServerConfig


@pytest.fixture
def queue_client(redis_client: aioredis.Redis) -> QueueClient:
    return QueueClient(redis_client)


@pytest.fixture
def inspector(redis_client: aioredis.Redis) -> Inspector:
    return Inspector(redis_client)


ServerRunner = Callable[..., contextlib.AbstractAsyncContextManager[Server]]


@contextlib.asynccontextmanager
async def running_server(
    redis: aioredis.Redis, handlers: Mapping[str, Handler], **config: Any
) -> AsyncIterator[Server]:
    """Run a Server in the background for the body of the ``async with``; stop it gracefully after."""
    config.setdefault("forward_interval", 0.1)
    config.setdefault("recover_interval", 0.2)
    config.setdefault("idle_poll_max", 0.02)
    server = Server(redis, ServerConfig(**config), handlers)
    runner = asyncio.create_task(server.run(install_signal_handlers=False))
    waiter = asyncio.create_task(server.wait_started())
    done, _ = await asyncio.wait({runner, waiter}, return_when=asyncio.FIRST_COMPLETED, timeout=10)
    if runner in done:
        runner.result()  # raises the start-up error
    try:
        yield server
    finally:
        server.request_stop()
        await asyncio.wait_for(runner, timeout=30)


@pytest.fixture
def queue_server(redis_client: aioredis.Redis) -> ServerRunner:
    def start(
        handlers: Mapping[str, Handler], **config: Any
    ) -> contextlib.AbstractAsyncContextManager[Server]:
        return running_server(redis_client, handlers, **config)

    return start


async def wait_until(
    predicate: Callable[[], Any], within: float = 10.0, interval: float = 0.02, what: str = "condition"
) -> None:
    """Poll an (async or sync) predicate until it is truthy; fail with a clear message after ``within`` s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return
        if loop.time() > deadline:
            raise AssertionError(f"{what} not met within {within}s")
        await asyncio.sleep(interval)
