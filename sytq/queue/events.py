"""Task state events published on ``sytq:events`` (the controller mirrors task status from them)."""

from __future__ import annotations

import json
import time

from sytq import redis_keys

EVENTS_CHANNEL = redis_keys.TASK_EVENTS_CHANNEL


def task_event(
    task_id: str, queue: str, task_type: str, state: str, retried: int, error: str | None = None
) -> str:
    """``state``: active | retry | archived | completed | succeeded (deleted on success)."""
    return json.dumps(
        {
            "task_id": task_id,
            "queue": queue,
            "type": task_type,
            "state": state,
            "retried": retried,
            "error": error,
            "ts": time.time(),
        },
        separators=(",", ":"),
    )
