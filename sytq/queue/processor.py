"""Processor: fetches tasks in batches (never more than free slots) and runs their handlers concurrently."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time
from collections.abc import Mapping

from sytq.queue import redis_ops
from sytq.queue.acknowledger import Acknowledger
from sytq.queue.codec import CorruptTaskError, TaskMessage, as_text
from sytq.queue.config import ServerConfig
from sytq.queue.held import HeldTask, HeldTasks
from sytq.queue.models import SkipRetry
from sytq.queue.outcomes import Outcome, Outcomes
from sytq.queue.periodic import REDIS_ERRORS
from sytq.queue.redis_ops import Call, RedisOps
from sytq.queue.task import Handler
from sytq.queue.task_events import task_event

log = logging.getLogger(__name__)

DEADLINE_ERROR = "context deadline exceeded"
CANCELED_ERROR = "context canceled"


def queue_order(weights: Mapping[str, int], strict_priority: bool) -> list[str]:
    """The order to try the queues in for one fetch."""
    queues = list(weights)
    if strict_priority:
        return sorted(queues, key=lambda q: -weights[q])
    if len(queues) == 1:
        return queues
    # Weighted random order, like asynq: a queue comes first with probability weight / total.
    order: list[str] = []
    while queues:
        pick = random.choices(queues, weights=[weights[q] for q in queues])[0]
        order.append(pick)
        queues.remove(pick)
    return order


class Processor:
    def __init__(
        self,
        ops: RedisOps,
        config: ServerConfig,
        handlers: Mapping[str, Handler],
        held: HeldTasks,
        outcomes: Outcomes,
        acknowledger: Acknowledger,
        stop: asyncio.Event,
    ) -> None:
        self._ops = ops
        self._config = config
        self._handlers = dict(handlers)
        self._held = held
        self._outcomes = outcomes
        self._ack = acknowledger
        self._stop = stop
        self._fetching = True

    def stop_fetching(self) -> None:
        self._fetching = False
        self._held.slot_freed.set()

    async def fetch_loop(self) -> None:
        idle = 0.0
        while self._fetching:
            free = self._config.concurrency - len(self._held)
            if free <= 0:
                self._held.slot_freed.clear()
                await self._held.slot_freed.wait()
                continue
            want = min(free, self._config.fetch_batch)
            now = time.time()
            lease_until = time.monotonic() + self._config.lease_seconds
            order = queue_order(self._config.queues, self._config.strict_priority)
            try:
                rows = await self._ops.dequeue(order, want, math.ceil(now + self._config.lease_seconds))
            except REDIS_ERRORS as exc:
                log.warning("dequeue failed, retrying: %s", exc)
                await self._sleep_unless_stopping(1.0)
                continue
            if not rows:
                idle = min(self._config.idle_poll_max, max(0.005, idle * 2))
                await self._sleep_unless_stopping(idle)
                continue
            idle = 0.0
            await self._start_fetched(order, rows, now, lease_until)

    async def _sleep_unless_stopping(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)

    async def _start_fetched(
        self, order: list[str], rows: list[object], now: float, lease_until: float
    ) -> None:
        events: list[Call] = []
        channel = self._outcomes.channel
        for i in range(0, len(rows), 3):
            queue = order[int(rows[i])]  # type: ignore[call-overload]
            task_id = as_text(rows[i + 1])
            raw = rows[i + 2]
            if not isinstance(raw, bytes):
                log.error("task %s in queue %s has no task hash; dropping its id from active", task_id, queue)
                self._ack.post(
                    Outcome(queue, task_id, "drop", call=redis_ops.drop_active_call(queue, task_id))
                )
                continue
            try:
                msg = TaskMessage.decode(raw)
            except CorruptTaskError as exc:
                log.error("task %s in queue %s: %s; archiving it", task_id, queue, exc)
                call = self._outcomes.quarantine(queue, task_id, raw, exc, now)
                self._ack.post(Outcome(queue, task_id, "archive", call=call))
                continue
            deadline = _effective_deadline(msg, now)
            held = HeldTask(
                queue=queue, msg=msg, lease_valid_until=lease_until, started=now, deadline=deadline
            )
            self._held.by_id[task_id] = held
            held.runner = asyncio.create_task(self._execute(task_id, held), name=f"sytq-task-{task_id}")
            if channel:
                events.append(
                    redis_ops.publish_call(
                        channel, task_event(task_id, queue, msg.type, "active", msg.retried)
                    )
                )
        if events:
            with contextlib.suppress(*REDIS_ERRORS):
                await self._ops.run(events)

    async def _execute(self, task_id: str, held: HeldTask) -> None:
        msg = held.msg
        task = self._outcomes.task_for(held.queue, task_id, msg, held.deadline)
        error: BaseException | None = None
        # A plain timer rather than asyncio.timeout(): half the cost, and this runs once per task.
        timer = (
            asyncio.get_running_loop().call_later(
                held.deadline - time.time(), self._held.cancel, task_id, "deadline"
            )
            if held.deadline
            else None
        )
        try:
            handler = self._handlers.get(msg.type)
            if handler is None:
                raise LookupError(f'handler not found for task "{msg.type}"')
            await handler(task)
        except asyncio.CancelledError:
            reason = held.cancel_reason
            if reason == "lease":
                self._ack.post(Outcome(held.queue, task_id, "forget"))
                return
            if reason == "deadline":
                error = TimeoutError(DEADLINE_ERROR)
            elif reason == "cancel":
                error = (
                    SkipRetry(CANCELED_ERROR)
                    if self._config.cancelled_tasks_archive
                    else RuntimeError(CANCELED_ERROR)
                )
            else:  # shutdown (or the server itself cancelled): hand the task back
                call = redis_ops.requeue_call(held.queue, task_id, time.time_ns())
                self._ack.post(Outcome(held.queue, task_id, "requeue", call=call))
                return
        except Exception as exc:
            error = exc
        finally:
            if timer is not None:
                timer.cancel()
        try:
            outcome = self._outcomes.finished(task_id, held, task, error)
        except Exception:  # never leave a slot held by a dead runner; the lease runs out instead
            log.exception("cannot build the outcome of task %s; leaving it to lease recovery", task_id)
            outcome = Outcome(held.queue, task_id, "forget")
        self._ack.post(outcome)


def _effective_deadline(msg: TaskMessage, now: float) -> float:
    """Earlier of now + timeout and the absolute deadline (unix s); 0 when neither is set."""
    candidates = [float(d) for d in (msg.deadline,) if d] + ([now + msg.timeout] if msg.timeout > 0 else [])
    return min(candidates) if candidates else 0.0
