"""Opens apiserver connections when a burst of LLMTasks starts, before their status patches need
them.

Each status patch in flight holds one HTTP/1.1 connection, and the first wave of a burst found the
pool empty (aiohttp closes idle connections after 15 s): ~128 TLS connections were opened at once
while the creation storm saturated the apiserver, 160 ms median / 280 ms p95 each, paid by the
first finished tasks. Firing N cheap concurrent requests leaves at least N connections in the pool
(idle ones are reused, the rest opened), without reading the pool's internals.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

logger = logging.getLogger(__name__)

FIRST_STAGE = 16  # fewer unfinished LLMTasks than this is not a burst (and ends the last one)
STAGE_MEMORY_SECONDS = 60.0  # within a burst, a stage reached this recently is not warmed again


class ConnectionWarmer:
    """``ahead_of(n)`` with the number of unfinished LLMTasks: each time that number reaches the
    next power of two (16, 32, ... up to ``most``), ``touch`` is called that many times at once.
    A count under 16 ends the burst; under sustained load a stage is warmed again after 60 s."""

    def __init__(self, touch: Callable[[], Awaitable[object]], most: int) -> None:
        self._touch = touch
        self._most = most
        self._stage = 0
        self._stage_at = 0.0
        self._running: asyncio.Task[None] | None = None

    def ahead_of(self, mirrors: int) -> None:
        if mirrors < FIRST_STAGE:  # not a burst, or the last one is over
            self._stage = 0
            return
        now = time.monotonic()
        if now - self._stage_at > STAGE_MEMORY_SECONDS:
            self._stage = 0
        if self._running is not None and not self._running.done():
            return
        stage = min(self._most, 1 << (mirrors.bit_length() - 1))
        if stage <= self._stage:
            return
        self._stage, self._stage_at = stage, now
        self._running = asyncio.create_task(self._open(stage), name="connection-warmer")

    async def _open(self, count: int) -> None:
        results = await asyncio.gather(*(self._touch() for _ in range(count)), return_exceptions=True)
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:  # nothing depends on it: the patches open their own connections if need be
            logger.debug("connection warm-up: %d of %d requests failed (%r)", len(failed), count, failed[0])

    async def close(self) -> None:
        if self._running is not None:
            self._running.cancel()
            await asyncio.gather(self._running, return_exceptions=True)
