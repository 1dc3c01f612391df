"""Runs one maintenance step at an interval, forever: a failing step is logged and tried again."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from redis import exceptions as redis_errors

from sytq.queue.models import QueueError

log = logging.getLogger(__name__)
REDIS_ERRORS = (QueueError, redis_errors.RedisError)


async def run_periodically(name: str, step: Callable[[], Awaitable[None]], interval: float) -> None:
    while True:
        try:
            await step()
        except REDIS_ERRORS as exc:
            log.warning("%s failed: %s", name, exc)
        except Exception:
            log.exception("%s failed unexpectedly", name)
        await asyncio.sleep(interval)
