"""TaskMessage <-> Python: one immutable record per task, encoded with asynq's protobuf."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sytq.queue.models import QueueError
from sytq.queue.proto import DecodeError, TaskMessageProto

__all__ = ["CorruptTaskError", "TaskMessage", "as_text", "encode_task", "from_unix", "to_unix"]


class CorruptTaskError(QueueError):
    """The bytes stored under a task's ``msg`` field are not a TaskMessage."""


def as_text(value: object) -> str:
    """A Redis reply (bytes) or a plain value as text."""
    return value.decode() if isinstance(value, bytes) else str(value)


def from_unix(seconds: float | int | None) -> datetime | None:
    if not seconds:
        return None
    return datetime.fromtimestamp(seconds, UTC)


def to_unix(moment: datetime) -> int:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp())


# What a task gets only after its enqueue (runs, failures, completion) or only in a group.
_LATER_FIELDS = ("retried", "error_msg", "last_failed_at", "completed_at", "group_key")


@dataclass(slots=True)
class TaskMessage:
    """asynq's TaskMessage; timestamps are unix seconds like asynq stores them.

    Treated as immutable (change it with ``replace``); not frozen only because frozen dataclasses
    are several times slower to build, and one is built per enqueued task."""

    type: str
    payload: bytes
    id: str
    queue: str
    retry: int = 25
    retried: int = 0
    error_msg: str = ""
    timeout: int = 0
    deadline: int = 0
    unique_key: str = ""
    last_failed_at: int = 0
    retention: int = 0
    completed_at: int = 0
    group_key: str = ""
    headers: dict[str, str] = field(default_factory=dict)

    def encode(self) -> bytes:
        return encode_task(
            self.type,
            self.payload,
            self.id,
            self.queue,
            self.retry,
            self.timeout,
            self.deadline,
            self.unique_key,
            self.retention,
            self.headers,
            later=self,
        )

    @classmethod
    def decode(cls, data: bytes | None) -> TaskMessage:
        if not data:
            raise CorruptTaskError("task hash has no msg field")
        try:
            proto = TaskMessageProto.FromString(data)
        except (DecodeError, ValueError) as exc:
            raise CorruptTaskError(f"msg is not a valid asynq TaskMessage: {exc}") from exc
        return cls(
            type=proto.type,
            payload=proto.payload,
            id=proto.id,
            queue=proto.queue,
            retry=proto.retry,
            retried=proto.retried,
            error_msg=proto.error_msg,
            timeout=proto.timeout,
            deadline=proto.deadline,
            unique_key=proto.unique_key,
            last_failed_at=proto.last_failed_at,
            retention=proto.retention,
            completed_at=proto.completed_at,
            group_key=proto.group_key,
            headers=dict(proto.headers),
        )

    def replace(self, **changes: object) -> TaskMessage:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


def encode_task(
    type: str,
    payload: bytes,
    id: str,
    queue: str,
    retry: int,
    timeout: int,
    deadline: int,
    unique_key: str,
    retention: int,
    headers: dict[str, str],
    later: TaskMessage | None = None,
) -> bytes:
    """A TaskMessage's bytes from the fields a task has at its enqueue, plus what ``later`` gathered
    since (runs, failures, completion, group). An enqueue calls it per task without building the
    dataclass."""
    # Only non-default fields are set: proto3 leaves defaults off the wire anyway; this is the hot path.
    proto = TaskMessageProto(type=type, payload=payload, id=id, queue=queue, retry=retry)
    if timeout:
        proto.timeout = timeout
    if deadline:
        proto.deadline = deadline
    if unique_key:
        proto.unique_key = unique_key
    if retention:
        proto.retention = retention
    if headers:
        entries = proto.headers
        for name, value in headers.items():  # a third cheaper than the map's generic update()
            entries[name] = value
    if later is not None:
        for name in _LATER_FIELDS:
            value = getattr(later, name)
            if value:
                setattr(proto, name, value)
    data: bytes = proto.SerializeToString()
    return data
