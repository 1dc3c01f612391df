"""The worker's queue-depth gauge (its health endpoints are ``sytq.health_server``)."""

from __future__ import annotations

import asyncio
import logging

from sytq import metrics_go
from sytq.metrics import QUEUE_DEPTH
from sytq.queue import Inspector

log = logging.getLogger(__name__)


async def export_queue_depth(inspector: Inspector, interval: float = 15.0) -> None:
    """Refresh sytq_queue_depth (and the original's syt_go_queue_size) forever (cancel to stop)."""
    while True:
        try:
            for queue in await inspector.queues():
                stats = await inspector.queue_stats(queue)
                for state in ("pending", "active", "scheduled", "retry", "archived", "completed"):
                    QUEUE_DEPTH.labels(queue=queue, state=state).set(getattr(stats, state))
                metrics_go.queue_size(queue, stats.size)
        except Exception as exc:
            log.warning("cannot read queue depth: %s", exc)
        await asyncio.sleep(interval)
