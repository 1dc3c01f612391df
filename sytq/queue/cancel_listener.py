"""Cancel listener: cancels the handler of a task named on ``asynq:cancel`` if this server runs it."""

from __future__ import annotations

import redis.asyncio as aioredis

from sytq import redis_keys
from sytq.queue.codec import as_text
from sytq.queue.held import HeldTasks
from sytq.queue.pubsub import subscribe


async def listen_for_cancels(redis: aioredis.Redis, held: HeldTasks) -> None:
    await subscribe(redis, redis_keys.CANCEL_CHANNEL, lambda data: held.cancel(as_text(data), "cancel"))
