"""What a handler receives, and the handler type."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime

from sytq.queue import redis_ops
from sytq.queue.redis_ops import CallBatcher


class Task:
    """One running task. ``write_result`` stores bytes in the task hash's ``result`` field,
    where asynq's Inspector (and ours) read it; ``attach_result`` has them written with the task's
    acknowledgement instead."""

    __slots__ = (
        "_writer",
        "attached_result",
        "deadline",
        "headers",
        "id",
        "max_retry",
        "payload",
        "queue",
        "retried",
        "type",
    )

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
        self.attached_result: bytes | None = None

    def attach_result(self, data: bytes) -> None:
        """The result to store when the task succeeds, in the same script that marks it completed
        (no round trip of its own). Only a task kept after completion (retention) keeps a result:
        without retention its hash is deleted at once, so there is nothing to write it to."""
        self.attached_result = bytes(data)

    async def write_result(self, data: bytes) -> None:
        await self._writer.call(redis_ops.write_result_call(self.queue, self.id, bytes(data)))

    def __repr__(self) -> str:
        return f"Task(id={self.id!r}, type={self.type!r}, queue={self.queue!r}, retried={self.retried})"


Handler = Callable[[Task], Awaitable[None]]
