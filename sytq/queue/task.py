"""What a handler receives, and the handler type."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime

from sytq.queue import redis_ops
from sytq.queue.redis_ops import CallBatcher


class Task:
    """One running task. ``write_result`` stores bytes in the task hash's ``result`` field,
    where asynq's Inspector (and ours) read it."""

    __slots__ = ("_writer", "deadline", "headers", "id", "max_retry", "payload", "queue", "retried", "type")

    def __init__(
        self,
        writer: CallBatcher,
        *,
        id: str,
        type: str,
        payload: bytes,
        queue: str,
        retried: int,
        max_retry: int,
        headers: dict[str, str],
        deadline: datetime | None,
    ) -> None:
        self._writer = writer
        self.id = id
        self.type = type
        self.payload = payload
        self.queue = queue
        self.retried = retried
        self.max_retry = max_retry
        self.headers = headers
        self.deadline = deadline

    async def write_result(self, data: bytes) -> None:
        await self._writer.call(redis_ops.write_result_call(self.queue, self.id, bytes(data)))

    def __repr__(self) -> str:
        return f"Task(id={self.id!r}, type={self.type!r}, queue={self.queue!r}, retried={self.retried})"


Handler = Callable[[Task], Awaitable[None]]
