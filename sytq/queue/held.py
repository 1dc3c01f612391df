"""The tasks one server holds a lease on: running, or finished and waiting for their acknowledgement."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass

from sytq.queue.codec import TaskMessage


@dataclass
class HeldTask:
    queue: str
    msg: TaskMessage
    lease_valid_until: float  # monotonic; the handler is cancelled past it
    started: float
    deadline: float  # unix seconds, 0 = none
    runner: asyncio.Task[None] | None = None
    cancel_reason: str | None = None


class HeldTasks:
    """Task id -> HeldTask; a slot is free again once its task is released."""

    def __init__(self) -> None:
        self.by_id: dict[str, HeldTask] = {}
        self.slot_freed = asyncio.Event()

    def __len__(self) -> int:
        return len(self.by_id)

    def runners(self) -> list[asyncio.Task[None]]:
        return [h.runner for h in self.by_id.values() if h.runner is not None]

    def cancel(self, task_id: str, reason: str) -> None:
        """Cancel a running handler once; ``reason`` (cancel | deadline | lease | shutdown) decides
        what happens to its task."""
        held = self.by_id.get(task_id)
        if held is not None and held.runner is not None and held.cancel_reason is None:
            held.cancel_reason = reason
            held.runner.cancel()

    def release(self, task_ids: Iterable[str]) -> None:
        """Forget finished tasks (a task whose handler still runs stays) and wake the fetcher."""
        for task_id in task_ids:
            held = self.by_id.get(task_id)
            if held is not None and held.runner is None:
                del self.by_id[task_id]
        self.slot_freed.set()
