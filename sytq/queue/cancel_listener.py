"""Cancel listener: cancels the handler of a task named on ``asynq:cancel`` if this server runs it."""

from __future__ import annotations

from collections.abc import Callable

import redis.asyncio as aioredis

from sytq import redis_keys
from sytq.queue.codec import as_text
from sytq.queue.held import HeldTasks
from sytq.queue.pubsub import subscribe


async def listen_for_cancels(
    redis: aioredis.Redis, held: HeldTasks, on_subscribed: Callable[[], None] | None = None
) -> None:
    await subscribe(
        redis,
        redis_keys.CANCEL_CHANNEL,
        lambda data: held.cancel(as_text(data), "cancel"),
        on_subscribed=on_subscribed,
    )
