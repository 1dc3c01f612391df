"""Listens to the workers' task events on Redis pub/sub and wakes the matching LLMTask mirrors."""

from __future__ import annotations

import asyncio
import json
import logging

from redis.exceptions import RedisError

from controller.context import ControllerContext
from sytq.queue import EVENTS_CHANNEL

logger = logging.getLogger(__name__)
RECONNECT_DELAY_SECONDS = 1.0


def parse_event(message: bytes | str) -> tuple[str, float | None] | None:
    """(task id, the worker's timestamp if any) of one event message; None for anything malformed
    (logged, never fatal)."""
    try:
        event = json.loads(message)
    except ValueError:
        logger.warning("ignoring a task event that is not JSON: %.200r", message)
        return None
    task_id = event.get("task_id") if isinstance(event, dict) else None
    if not isinstance(task_id, str) or not task_id:
        return None
    at = event.get("ts")
    return task_id, float(at) if isinstance(at, int | float) and not isinstance(at, bool) else None


async def listen(ctx: ControllerContext) -> None:
    """Run until cancelled; reconnects after Redis errors (and then wakes every mirror to resync)."""
    while True:
        pubsub = ctx.redis.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(EVENTS_CHANNEL)
            ctx.wakeups.notify_all()  # events sent while we were not subscribed are lost
            async for message in pubsub.listen():
                if message.get("type") != "message":
                    continue
                parsed = parse_event(message["data"])
                if parsed is not None:
                    ctx.wakeups.notify(*parsed)
        except (RedisError, OSError) as exc:
            logger.warning(
                "task event subscription lost (%s); retrying in %.0fs", exc, RECONNECT_DELAY_SECONDS
            )
            await asyncio.sleep(RECONNECT_DELAY_SECONDS)
        finally:
            await pubsub.aclose()  # type: ignore[no-untyped-call]
