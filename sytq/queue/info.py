"""Building TaskInfo from a decoded TaskMessage plus where the task sits."""

from __future__ import annotations

from datetime import datetime

from sytq.queue.codec import TaskMessage, from_unix
from sytq.queue.models import TaskInfo, TaskState


def task_info(
    msg: TaskMessage,
    state: TaskState,
    *,
    next_process_at: datetime | None = None,
    result: bytes | None = None,
) -> TaskInfo:
    # Same as TaskInfo(...), without the frozen dataclass's per-field object.__setattr__: this runs for
    # every task of an enqueue_many batch, and the instance stays frozen for everyone after.
    info = object.__new__(TaskInfo)
    info.__dict__.update(
        id=msg.id,
        queue=msg.queue,
        type=msg.type,
        payload=msg.payload,
        state=state,
        max_retry=msg.retry,
        retried=msg.retried,
        last_error=msg.error_msg,
        last_failed_at=from_unix(msg.last_failed_at),
        timeout=msg.timeout,
        deadline=from_unix(msg.deadline),
        next_process_at=next_process_at,
        completed_at=from_unix(msg.completed_at),
        retention=msg.retention,
        result=result,
        headers=dict(msg.headers),
    )
    return info
