"""Every Redis key name and prefix of the product: asynq's layout (``asynq:*``) and our own (``sytq:*``).

Queue keys carry the queue name in braces (a Redis Cluster hash tag). Keys of our own live under
``sytq:`` so that asynq's tools, which list ``asynq:*``, never see them.
"""

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


_SERVER_INFO_PREFIX = "asynq:servers:"
_WORKERS_PREFIX = "asynq:workers:"


def server_info_key(host: str, pid: int, server_id: str) -> str:
    return f"{_SERVER_INFO_PREFIX}{{{host}:{pid}:{server_id}}}"


def workers_key(host: str, pid: int, server_id: str) -> str:
    return f"{_WORKERS_PREFIX}{{{host}:{pid}:{server_id}}}"


def workers_key_of(server_info_key: str) -> str:
    """The workers hash that belongs to a server info key (both name the same server)."""
    return _WORKERS_PREFIX + server_info_key.removeprefix(_SERVER_INFO_PREFIX)


# ---- sytq's own keys ------------------------------------------------------------------------------

TASK_EVENTS_CHANNEL = "sytq:events"  # pub/sub: task state events (sytq.queue.task_events)


def llm_limit_key_prefix(provider: str, model: str) -> str:
    """Prefix of the shared provider limits of one model (sytq.llm.limiter); the provider is the
    hash tag, so one model's keys stay in one Redis Cluster slot."""
    return f"sytq:llm:{{{provider}}}:{model}"


def llm_in_flight_key(provider: str, model: str) -> str:
    return f"{llm_limit_key_prefix(provider, model)}:inflight"


def llm_requests_key(provider: str, model: str, minute: int) -> str:
    """Requests started in one minute (``minute`` = unix time // 60)."""
    return f"{llm_limit_key_prefix(provider, model)}:rpm:{minute}"


def llm_tokens_key(provider: str, model: str, minute: int) -> str:
    return f"{llm_limit_key_prefix(provider, model)}:tpm:{minute}"


def rate_limit_key(client: str, window: int) -> str:
    """Requests of one API client in one fixed window (sytq.ratelimit)."""
    return f"sytq:ratelimit:{client}:{window}"


def idempotency_key(task_id: str) -> str:
    """Fingerprint of the first request body for an idempotency-derived task id (sytq.idempotency)."""
    return f"sytq:idempotency:{task_id}"


def llmtask_name_key(task_id: str) -> str:
    """Resource mode: the LLMTask object name for a task id handed out before the controller enqueued it."""
    return f"sytq:llmtask-name:{task_id}"


RECONCILER_LEASE = "sytq:reconciler:lease"  # held by the one worker whose reconciler is active
