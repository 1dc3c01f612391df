"""Forwarder: moves scheduled and retry tasks that are due to pending."""

from __future__ import annotations

import time
from collections.abc import Sequence

from sytq.queue import redis_ops
from sytq.queue.redis_ops import Call, RedisOps


async def forward_due_tasks(ops: RedisOps, queues: Sequence[str]) -> None:
    now = time.time()
    calls: list[Call] = []
    for queue in queues:
        calls += redis_ops.forward_calls(queue, int(now), time.time_ns())
    await ops.run(calls)
