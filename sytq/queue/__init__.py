"""asynq-compatible task queue: client, worker runtime (Server) and Inspector over asynq's Redis layout."""

from sytq.queue.client import QueueClient, new_task_id
from sytq.queue.config import RetryDelay, ServerConfig
from sytq.queue.inspector import Inspector
from sytq.queue.models import (
    DuplicateTaskError,
    EnqueueRequest,
    InvalidTaskError,
    QueueError,
    QueueNotFoundError,
    QueueStats,
    QueueUnavailableError,
    RetryIn,
    ServerInfo,
    SkipRetry,
    TaskIdConflictError,
    TaskInfo,
    TaskNotFoundError,
    TaskState,
    TaskStateError,
    WorkerInfo,
)
from sytq.queue.pubsub import subscribe
from sytq.queue.redis_ops import is_closed_transport_error
from sytq.queue.retry import DEFAULT_MAX_RETRY, default_retry_delay
from sytq.queue.server import Server
from sytq.queue.task import Handler, Task
from sytq.queue.task_events import TASK_EVENTS_CHANNEL, TaskEventHeader, parse_task_event, task_event

__all__ = [
    "DEFAULT_MAX_RETRY",
    "TASK_EVENTS_CHANNEL",
    "DuplicateTaskError",
    "EnqueueRequest",
    "Handler",
    "Inspector",
    "InvalidTaskError",
    "QueueClient",
    "QueueError",
    "QueueNotFoundError",
    "QueueStats",
    "QueueUnavailableError",
    "RetryDelay",
    "RetryIn",
    "Server",
    "ServerConfig",
    "ServerInfo",
    "SkipRetry",
    "Task",
    "TaskEventHeader",
    "TaskIdConflictError",
    "TaskInfo",
    "TaskNotFoundError",
    "TaskState",
    "TaskStateError",
    "WorkerInfo",
    "default_retry_delay",
    "is_closed_transport_error",
    "new_task_id",
    "parse_task_event",
    "subscribe",
    "task_event",
]
