"""Task events: the wire format of the task state changes workers publish, built and parsed here."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass

from sytq import redis_keys

TASK_EVENTS_CHANNEL = redis_keys.TASK_EVENTS_CHANNEL

log = logging.getLogger(__name__)


def task_event(
    task_id: str, queue: str, task_type: str, state: str, retried: int, error: str | None = None
) -> str:
    """One event as sent; ``state``: active | retry | archived | completed | succeeded (deleted)."""
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


@dataclass(frozen=True)
class TaskEventHeader:
    """What a listener needs of an event: whose it is and when the worker sent it (None if unknown)."""

    task_id: str
    sent_at: float | None


def parse_task_event(message: bytes | str) -> TaskEventHeader | None:
    """The header of one event message; None for anything malformed (logged, never fatal)."""
    try:
        event = json.loads(message)
    except ValueError:
        log.warning("ignoring a task event that is not JSON: %.200r", message)
        return None
    task_id = event.get("task_id") if isinstance(event, dict) else None
    if not isinstance(task_id, str) or not task_id:
        return None
    at = event.get("ts")
    sent_at = float(at) if isinstance(at, int | float) and not isinstance(at, bool) else None
    return TaskEventHeader(task_id, sent_at)
