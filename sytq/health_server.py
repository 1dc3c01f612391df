"""/healthz, /readyz and /metrics on SYTQ_METRICS_PORT (plain ASGI on uvicorn), for the worker and
the controller."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import redis.asyncio as aioredis
import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST
from redis.exceptions import RedisError

from sytq import metrics_go

ReadyCheck = Callable[[], Awaitable[str | None]]  # None = ready, else why not
REDIS_PING_TIMEOUT_SECONDS = 5.0


async def redis_problem(redis: aioredis.Redis) -> str | None:
    """For a ReadyCheck: None while Redis answers a PING in time, else why not."""
    try:
        async with asyncio.timeout(REDIS_PING_TIMEOUT_SECONDS):
            await redis.ping()
    except (RedisError, OSError, TimeoutError) as exc:
        return f"redis unreachable: {exc!r}"
    return None


_Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class HealthApp:
    def __init__(self, ready_check: ReadyCheck, go_metrics: bool = False) -> None:
        self._ready_check = ready_check
        self._go_metrics = go_metrics  # also the Go original's syt_go_queue_* metrics

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: _Send) -> None:
        if scope["type"] != "http":
            return
        path = scope["path"]
        if path == "/healthz":
            await _reply(send, 200, b"ok\n")
        elif path == "/readyz":
            problem = await self._ready_check()
            await _reply(send, 200 if problem is None else 503, (problem or "ready").encode() + b"\n")
        elif path == "/metrics":
            await _reply(send, 200, metrics_go.exposition(self._go_metrics), CONTENT_TYPE_LATEST)
        else:
            await _reply(send, 404, b"not found\n")


async def _reply(
    send: _Send,
    status: int,
    body: bytes,
    content_type: str = "text/plain; charset=utf-8",
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", content_type.encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


class HealthServer:
    """Runs the health app in the current event loop; ``port`` 0 disables it."""

    def __init__(
        self, port: int, ready_check: ReadyCheck, host: str = "0.0.0.0", go_metrics: bool = False
    ) -> None:
        config = uvicorn.Config(
            HealthApp(ready_check, go_metrics),
            host=host,
            port=port,
            log_level="warning",
            access_log=False,
            lifespan="off",
        )
        self._server = uvicorn.Server(config)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._server.serve())
        # uvicorn.Server exposes only a ``started`` flag, no event to wait on.
        while not self._server.started and not self._task.done():  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        if self._task.done():
            self._task.result()  # surfaces "address in use" and the like

    async def stop(self) -> None:
        if self._task is None:
            return
        self._server.should_exit = True
        with contextlib.suppress(Exception):
            await self._task
