"""Janitor: deletes completed tasks whose retention has run out."""

from __future__ import annotations

import time
from collections.abc import Sequence

from sytq.queue import redis_ops
from sytq.queue.redis_ops import RedisOps


async def delete_expired_completed(ops: RedisOps, queues: Sequence[str]) -> None:
    now = int(time.time())
    await ops.run([redis_ops.delete_expired_completed_call(q, now) for q in queues])
