"""asynq's Redis key names. Queue keys carry the queue name in braces (a Redis Cluster hash tag)."""

from __future__ import annotations

import hashlib

ALL_QUEUES = "asynq:queues"
ALL_SERVERS = "asynq:servers"
ALL_WORKERS = "asynq:workers"
CANCEL_CHANNEL = "asynq:cancel"


def queue_prefix(queue: str) -> str:
    return f"asynq:{{{queue}}}:"


def task_key_prefix(queue: str) -> str:
    return f"{queue_prefix(queue)}t:"


def task_key(queue: str, task_id: str) -> str:
    return f"{task_key_prefix(queue)}{task_id}"


def pending_key(queue: str) -> str:
    return f"{queue_prefix(queue)}pending"


def active_key(queue: str) -> str:
    return f"{queue_prefix(queue)}active"


def scheduled_key(queue: str) -> str:
    return f"{queue_prefix(queue)}scheduled"


def retry_key(queue: str) -> str:
    return f"{queue_prefix(queue)}retry"


def archived_key(queue: str) -> str:
    return f"{queue_prefix(queue)}archived"


def completed_key(queue: str) -> str:
    return f"{queue_prefix(queue)}completed"


def lease_key(queue: str) -> str:
    return f"{queue_prefix(queue)}lease"


def paused_key(queue: str) -> str:
    return f"{queue_prefix(queue)}paused"


def processed_key(queue: str, day: str) -> str:
    """Daily counter; ``day`` is the UTC date as YYYY-MM-DD."""
    return f"{queue_prefix(queue)}processed:{day}"


def failed_key(queue: str, day: str) -> str:
    return f"{queue_prefix(queue)}failed:{day}"


def processed_total_key(queue: str) -> str:
    return f"{queue_prefix(queue)}processed"


def failed_total_key(queue: str) -> str:
    return f"{queue_prefix(queue)}failed"


def unique_key(queue: str, task_type: str, payload: bytes | None) -> str:
    if payload is None:
        return f"{queue_prefix(queue)}unique:{task_type}:"
    return f"{queue_prefix(queue)}unique:{task_type}:{hashlib.md5(payload).hexdigest()}"


def server_info_key(host: str, pid: int, server_id: str) -> str:
    return f"asynq:servers:{{{host}:{pid}:{server_id}}}"


def workers_key(host: str, pid: int, server_id: str) -> str:
    return f"asynq:workers:{{{host}:{pid}:{server_id}}}"
