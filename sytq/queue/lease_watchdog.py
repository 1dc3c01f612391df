"""Lease watchdog: cancels a handler whose lease could not be extended in time, because another
server may recover and run its task."""

from __future__ import annotations

import asyncio
import logging
import time

from sytq.queue.held import HeldTasks

log = logging.getLogger(__name__)


async def watch_leases(held: HeldTasks, lease_seconds: float) -> None:
    interval = max(0.05, min(1.0, lease_seconds / 10))
    while True:
        await asyncio.sleep(interval)
        now = time.monotonic()
        for task_id, task in list(held.by_id.items()):
            if task.runner is not None and task.cancel_reason is None and task.lease_valid_until <= now:
                log.warning("lease of task %s ran out (Redis unreachable?); cancelling its handler", task_id)
                held.cancel(task_id, "lease")
