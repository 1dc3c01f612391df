"""Public value types and errors of the queue engine."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple

__all__ = [
    "DuplicateTaskError",
    "EnqueueRequest",
    "QueueError",
    "QueueNotFoundError",
    "QueueStats",
    "QueueUnavailableError",
    "RetryIn",
    "ServerInfo",
    "SkipRetry",
    "TaskIdConflictError",
    "TaskInfo",
    "TaskNotFoundError",
    "TaskState",
    "TaskStateError",
    "WorkerInfo",
]


class TaskState(enum.StrEnum):
    PENDING = "pending"
    ACTIVE = "active"
    SCHEDULED = "scheduled"
    RETRY = "retry"
    ARCHIVED = "archived"
    COMPLETED = "completed"


@dataclass(frozen=True)
class TaskInfo:
    """What asynq's TaskInfo carries."""

    id: str
    queue: str
    type: str
    payload: bytes
    state: TaskState
    max_retry: int
    retried: int
    last_error: str
    last_failed_at: datetime | None
    timeout: int  # seconds, 0 = none
    deadline: datetime | None
    next_process_at: datetime | None
    completed_at: datetime | None
    retention: int
    result: bytes | None
    headers: dict[str, str] = field(default_factory=dict)


class QueueError(Exception):
    """Base of every error the queue engine raises on purpose."""


class TaskIdConflictError(QueueError):
    """A caller-chosen task id already exists in the queue."""


class DuplicateTaskError(QueueError):
    """The unique lock for this (queue, type, payload) is held by another task."""


class TaskNotFoundError(QueueError):
    """No task with that id (in that queue / state)."""


class QueueNotFoundError(QueueError):
    """The queue is not registered in ``asynq:queues``."""


class TaskStateError(QueueError):
    """The operation does not apply to the task's current state (e.g. deleting an active task)."""


class QueueUnavailableError(QueueError):
    """Redis cannot be reached; HTTP callers answer 503."""


class InvalidTaskError(QueueError, ValueError):
    """Bad arguments to enqueue (empty type, negative retry, unknown queue name...)."""


class SkipRetry(Exception):
    """Raised by a handler: archive the task at once, no further retries."""


class RetryIn(Exception):
    """Raised by a handler: retry after exactly ``delay`` seconds (e.g. a provider's Retry-After)."""

    def __init__(self, delay: float, message: str) -> None:
        super().__init__(message)
        self.delay = max(0.0, float(delay))
        self.message = message


class EnqueueRequest(NamedTuple):
    """One task for ``QueueClient.enqueue_many``. Immutable; a tuple rather than a frozen dataclass
    because one is built per task and a frozen dataclass costs several times more to build."""

    type: str
    payload: bytes
    queue: str = "default"
    task_id: str | None = None
    max_retry: int = 25
    timeout: float | None = None
    deadline: datetime | None = None
    process_at: datetime | None = None
    process_in: float | None = None
    unique_for: float | None = None
    retention: float | None = None
    headers: Mapping[str, str] | None = None


@dataclass(frozen=True)
class QueueStats:
    queue: str
    size: int
    pending: int
    active: int
    scheduled: int
    retry: int
    archived: int
    completed: int
    processed_today: int
    failed_today: int
    processed_total: int
    failed_total: int
    paused: bool
    latency_seconds: float
    memory_usage_bytes: int = 0


@dataclass(frozen=True)
class WorkerInfo:
    task_id: str
    task_type: str
    queue: str
    started: datetime | None
    deadline: datetime | None


@dataclass(frozen=True)
class ServerInfo:
    """One live server as asynq's heartbeat records it (``asynq server ls``)."""

    id: str
    host: str
    pid: int
    concurrency: int
    queues: dict[str, int]
    strict_priority: bool
    status: str
    started: datetime | None
    active_workers: int
    workers: list[WorkerInfo] = field(default_factory=list)
