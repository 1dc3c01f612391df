"""The reconciler: every task reaches a final stored state and its callback, whatever ended its run.

A run can end without writing its outcome: a worker killed (kill -9, OOM) on the task's last
attempt, whose lease recovery then archives it; a task cancelled while running; a Redis or database
error on the last attempt. A callback can be left pending when its task could not be enqueued.
One worker of the fleet at a time (a Redis lease) looks, every ``reconcile_interval_seconds``:

1. archived llm tasks without a final row: failed with the queue's last error, callback queued;
2. rows still queued/running whose queue task is archived or gone: the same;
3. callbacks pending whose callback task is gone: queued again; archived: marked failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, fields
from datetime import timedelta

import redis.asyncio as aioredis
from pydantic import ValidationError

from sytq import redis_keys
from sytq.lease_lock import LeaseLock
from sytq.metrics import TASKS_FAILED
from sytq.queue import Inspector, QueueError, TaskInfo, TaskState
from sytq.storage import CALLBACK_FAILED, CALLBACK_PENDING, NewTask, RecordTableNotAllowed, utcnow
from sytq.storage.stuck import RowRef, StuckRows
from sytq.tasks import TYPE_LLM_CHAT, TYPE_LLM_PROCESS, LLMChatPayload, LLMProcessPayload
from worker.chat import chat_request
from worker.finish import callback_task_id, queue_callback
from worker.pipeline import Pipeline

log = logging.getLogger(__name__)
LLM_TYPES = frozenset({TYPE_LLM_CHAT, TYPE_LLM_PROCESS})
PAGE = 500
MAX_PAGES = 20  # per step and pass: a pass stays bounded however much is stuck
GONE = "task is no longer on the queue (deleted, trimmed from the archive, or lost with Redis)"


@dataclass
class ReconcileCounts:
    archived_finished: int = 0
    lost_finished: int = 0
    callbacks_requeued: int = 0
    callbacks_given_up: int = 0

    def __bool__(self) -> bool:
        return any(getattr(self, f.name) for f in fields(self))


class LeaseLost(Exception):
    """Another worker took the reconciler's lease during a pass."""


class Reconciler:
    def __init__(self, pipeline: Pipeline, redis: aioredis.Redis, *, interval: float, grace: float) -> None:
        self._pipeline = pipeline
        self._inspector = Inspector(redis)
        self._rows = StuckRows(pipeline.store)
        self._interval = interval
        self._grace = grace
        # Held across passes; runs out three intervals after its holder stops renewing it.
        self._lease = LeaseLock(redis, redis_keys.RECONCILER_LEASE, ttl_seconds=max(3 * interval, 5.0))
        # queue -> (archive time to read from, tasks archived at that time already read)
        self._archived_read_to: dict[str, tuple[float, int]] = {}

    async def run(self) -> None:
        """Reconcile every interval while holding the lease (cancel to stop)."""
        try:
            while True:
                try:
                    if await self._lease.acquire():
                        counts = await self.reconcile_once()
                        if counts:
                            log.warning("reconciler finished stuck work: %s", counts)
                except LeaseLost:
                    log.info("reconciler lease taken over by another worker")
                except Exception as exc:  # Redis or the database away: the next pass tries again
                    log.warning("reconciler pass failed: %s", exc)
                await asyncio.sleep(self._interval)
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._lease.release(), 2.0)

    async def reconcile_once(self) -> ReconcileCounts:
        counts = ReconcileCounts()
        await self._archived_tasks(counts)
        await self._unfinished_rows(counts)
        await self._pending_callbacks(counts)
        return counts

    async def _keep_lease(self) -> None:
        if not await self._lease.acquire():
            raise LeaseLost

    async def _pages(self, read: Callable[[str], Awaitable[list[RowRef]]]) -> AsyncIterator[list[RowRef]]:
        """Pages of rows in task id order (``read(after)`` gives the next), the lease kept between."""
        after = ""
        for _ in range(MAX_PAGES):
            refs = await read(after)
            if not refs:
                return
            yield refs
            after = refs[-1].task_id
            await self._keep_lease()

    # --- 1. archived tasks without a final row -----------------------------------------------------

    async def _archived_tasks(self, counts: ReconcileCounts) -> None:
        # Archive times are whole seconds: only seconds that are over are read (a task archived
        # later in the current one would be skipped), and only after the grace, which also covers
        # hosts whose clocks disagree.
        read_to = float(math.floor(time.time() - self._grace))
        for queue in await self._inspector.queues():
            since, skip = self._archived_read_to.get(queue, (0.0, 0))
            last, at_last = since, 0  # the latest archive time read, and how many tasks had it
            for page_number in range(MAX_PAGES):
                page = await self._inspector.list_archived_between(
                    queue, since, read_to, limit=PAGE, offset=skip + page_number * PAGE
                )
                llm = [info for info, _ in page if info.type in LLM_TYPES]
                stuck = await self._rows.without_final_row([info.id for info in llm])
                for info in llm:
                    if info.id in stuck and await self._finish(info.id, info.type, queue, info):
                        counts.archived_finished += 1
                for _, archived_at in page:
                    last, at_last = (last, at_last + 1) if archived_at == last else (archived_at, 1)
                await self._keep_lease()
                if len(page) < PAGE:
                    self._archived_read_to[queue] = (read_to, 0)
                    break
            else:  # more than a pass reads: the next one goes on after the last task read
                self._archived_read_to[queue] = (last, at_last + (skip if last == since else 0))

    # --- 2. rows left queued/running -------------------------------------------------------------

    async def _unfinished_rows(self, counts: ReconcileCounts) -> None:
        created_before = utcnow() - timedelta(seconds=self._grace)
        pages = self._pages(lambda after: self._rows.unfinished(created_before, after, PAGE))
        async for refs in pages:
            found = await self._inspector.get_tasks([(ref.queue, ref.task_id) for ref in refs])
            for ref, info in zip(refs, found, strict=True):
                if isinstance(info, TaskInfo) and info.state is not TaskState.ARCHIVED:
                    continue  # still pending, scheduled, retrying, running or just completed
                queued = info if isinstance(info, TaskInfo) else None
                if await self._finish(ref.task_id, ref.type, ref.queue, queued):
                    counts.lost_finished += 1

    # --- 3. callbacks left pending --------------------------------------------------------------

    async def _pending_callbacks(self, counts: ReconcileCounts) -> None:
        finished_before = utcnow() - timedelta(seconds=self._grace)
        pages = self._pages(lambda after: self._rows.callbacks_pending(finished_before, after, PAGE))
        async for refs in pages:
            callbacks = self._pipeline.settings.callback_queue
            found = await self._inspector.get_tasks(
                [(callbacks, callback_task_id(ref.task_id)) for ref in refs]
            )
            for ref, info in zip(refs, found, strict=True):
                if isinstance(info, TaskInfo):
                    if info.state is TaskState.ARCHIVED:
                        await self._give_up_callback(ref, info)
                        counts.callbacks_given_up += 1
                elif await self._requeue_callback(ref):
                    counts.callbacks_requeued += 1

    async def _give_up_callback(self, ref: RowRef, info: TaskInfo) -> None:
        """The callback task ran out of attempts without its outcome stored (its worker died)."""
        error = f"callback given up: {info.last_error or 'archived'}"
        log.warning("callback of task %s archived while its row said pending: %s", ref.task_id, error)
        await self._pipeline.store.set_callback_state(ref.task_id, CALLBACK_FAILED, info.retried + 1, error)

    async def _requeue_callback(self, ref: RowRef) -> bool:
        # Read again after Redis answered: a callback delivered meanwhile is stored as delivered
        # before its task leaves Redis, so it is never sent twice from here.
        record = await self._pipeline.store.get(ref.task_id)
        if record is None or record.callback_status != CALLBACK_PENDING:
            return False
        await queue_callback(self._pipeline, record)
        return True

    # --- finishing a task ------------------------------------------------------------------------

    async def _finish(self, task_id: str, task_type: str, queue: str, info: TaskInfo | None) -> bool:
        """Fail the task with why its run ended (the queue's last error, or that it is gone) and
        queue its callback; False when its row turned out final already."""
        if info is None:
            error = GONE
        else:
            error = f"task archived without a stored outcome: {info.last_error or 'no error recorded'}"
        new, record_ref = await self._request_of(task_id, task_type, queue, info)
        attempts = info.retried + 1 if info is not None else 0
        record = await self._pipeline.store.finish_lost(new, error, attempts)
        if record is None:
            return False
        log.warning("task %s finished by the reconciler: %s", task_id, error)
        TASKS_FAILED.labels(type=task_type, reason="reconciled").inc()
        if record_ref is not None:
            table, record_id = record_ref
            settings = self._pipeline.settings
            await self._pipeline.records.mark_failed(table, record_id, settings.record_status_failed, error)
        await queue_callback(self._pipeline, record)
        return True

    async def _request_of(
        self, task_id: str, task_type: str, queue: str, info: TaskInfo | None
    ) -> tuple[NewTask, tuple[str, int] | None]:
        """What the queue task asked for (for a row created now), and its record for llm:process."""
        bare = NewTask(task_id, task_type, queue)
        if info is None:
            return bare, None
        try:
            if task_type == TYPE_LLM_PROCESS:
                process = LLMProcessPayload.model_validate_json(info.payload)
                record = await self._pipeline.records.fetch(process.table_name, process.id)
                metadata = {"table_name": process.table_name, "id": process.id}
                url = record.callback_url if record is not None else None
                new = NewTask(task_id, task_type, queue, metadata=metadata, callback_url=url)
                # Only a record its run left "processing" is marked failed: one that already says
                # failed (an attempt's error, or the Go original's own worker) keeps its count.
                stuck = (
                    record is not None and record.status == self._pipeline.settings.record_status_processing
                )
                return new, ((process.table_name, process.id) if stuck else None)
            chat = LLMChatPayload.model_validate_json(info.payload)
        except (ValidationError, RecordTableNotAllowed, QueueError):
            return bare, None
        return chat_request(task_id, task_type, queue, chat), None
