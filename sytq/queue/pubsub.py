"""Redis pub/sub subscription that outlives connection losses: the one ``subscribe()`` of the product."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import redis.asyncio as aioredis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)
RESUBSCRIBE_DELAY_SECONDS = 1.0


async def subscribe(
    redis: aioredis.Redis,
    channel: str,
    on_message: Callable[[bytes], None],
    *,
    on_subscribed: Callable[[], None] | None = None,
) -> None:
    """Run until cancelled, handing every message on ``channel`` to ``on_message``. After a lost
    connection it subscribes again; messages sent in between are lost, so ``on_subscribed`` (called
    after every subscribe) is where a listener catches up."""
    while True:
        pubsub = redis.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(channel)
            if on_subscribed is not None:
                on_subscribed()
            async for message in pubsub.listen():
                if message.get("type") == "message":
                    on_message(message["data"])
        except (RedisError, OSError) as exc:
            log.warning(
                "subscription to %s lost (%s); subscribing again in %.0fs",
                channel,
                exc,
                RESUBSCRIBE_DELAY_SECONDS,
            )
            await asyncio.sleep(RESUBSCRIBE_DELAY_SECONDS)
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()  # type: ignore[no-untyped-call]
