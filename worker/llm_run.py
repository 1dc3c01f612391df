"""One LLM attempt for a task, shared by llm:chat and llm:process.

Order matters for the guarantees: the row is stored before the task is acknowledged, a task whose
row already succeeded never calls the provider again, and a final failure is stored (and its
callback queued) before the queue archives the task.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import NoReturn

from sytq import metrics_go
from sytq.llm import LLMError, LLMFatalError
from sytq.metrics import TASKS_FAILED
from sytq.queue import RetryDelay, RetryIn, SkipRetry, Task
from sytq.settings import Settings
from sytq.storage import (
    STATUS_FAILED,
    STATUS_SUCCEEDED,
    LLMOutcome,
    NewTask,
    RowRefusedError,
    TaskRecord,
    utcnow,
)
from sytq.tasks import OWNER_HEADER, TYPE_CALLBACK_DELIVER
from worker.finish import enqueue_callback
from worker.pipeline import Pipeline

log = logging.getLogger(__name__)
MAX_TASK_ID_CHARS = 191  # the primary key's width

AttemptErrorHook = Callable[[str, bool], Awaitable[None]]


# Kept back from the task's deadline for storing a failed attempt and queueing its callback: a
# handler the queue cancels at the deadline could do neither.
DEADLINE_MARGIN_SECONDS = 5.0


def _time_left(task: Task) -> float | None:
    if task.deadline is None:
        return None
    return (task.deadline - datetime.now(UTC)).total_seconds() - DEADLINE_MARGIN_SECONDS


def is_last_attempt(task: Task) -> bool:
    return task.retried >= task.max_retry


async def fail_task(pipeline: Pipeline, task: Task, message: str, reason: str) -> NoReturn:
    """Store a final failure, queue its callback, and archive the task."""
    record = await pipeline.store.mark_failed(task.id, message, final=True)
    TASKS_FAILED.labels(type=task.type, reason=reason).inc()
    metrics_go.task_failed(task.type, reason)
    await enqueue_callback(pipeline, task, record)
    raise SkipRetry(message)


async def fail_before_start(
    pipeline: Pipeline, task: Task, message: str, reason: str, *, callback_url: str | None = None
) -> NoReturn:
    """Fail a task that cannot even start (bad payload, missing record): a bare row keeps the error
    (and the callback URL, when one could be read, so the caller hears of it)."""
    owner = task.headers.get(OWNER_HEADER)
    bare = NewTask(task.id, task.type, task.queue, client_id=owner, callback_url=callback_url)
    await pipeline.store.begin_attempt(bare, task.retried + 1)
    await fail_task(pipeline, task, message, reason)


async def run_llm(
    pipeline: Pipeline, task: Task, new: NewTask, *, on_attempt_error: AttemptErrorHook | None = None
) -> tuple[TaskRecord, bool]:
    """The succeeded row and whether the provider was called now (False: it was already stored).

    A task without a row (the common case: its first delivery) calls the provider and then writes
    its row once, answer included. A task with a row (a retry, a task recovered from a dead worker,
    the same id enqueued again) continues on that row, and never calls the provider again once the
    row holds an answer. A row the database refuses fails the task for good: a bare row keeps the
    error (what the request held cannot be stored)."""
    try:
        return await _run_llm(pipeline, task, new, on_attempt_error)
    except RowRefusedError as exc:
        await fail_before_start(pipeline, task, str(exc), "row_refused", callback_url=new.callback_url)


async def _run_llm(
    pipeline: Pipeline, task: Task, new: NewTask, on_attempt_error: AttemptErrorHook | None
) -> tuple[TaskRecord, bool]:
    if len(task.id) > MAX_TASK_ID_CHARS:
        raise SkipRetry(f"task id longer than {MAX_TASK_ID_CHARS} characters cannot be stored")
    record: TaskRecord | None = None
    if await pipeline.store.exists(task.id):
        record = await pipeline.store.begin_attempt(new, attempt=task.retried + 1)
        if record.status == STATUS_SUCCEEDED:
            log.info("result already stored; not calling the provider again")
            return record, False
        if record.status == STATUS_FAILED:
            # Stored as failed but not archived (e.g. the worker died in between): finish the job.
            await enqueue_callback(pipeline, task, record)
            raise SkipRetry(record.error or "task failed earlier")
    assert new.model is not None and new.messages is not None
    started_at = utcnow()
    try:
        result = await pipeline.llm.chat(new.model, new.messages, new.parameters, time_limit=_time_left(task))
    except LLMError as exc:
        if record is None:  # the failed attempt is kept on a row too
            await pipeline.store.begin_attempt(new, attempt=task.retried + 1)
        await _attempt_failed(pipeline, task, exc, on_attempt_error)
    outcome = LLMOutcome(
        content=result.content,
        reasoning_content=result.reasoning_content,
        finish_reason=result.finish_reason,
        usage=result.usage,
        llm_latency_ms=result.latency_ms,
        model=result.model or new.model,
    )
    # Cancelled from here on (shutdown, deadline), the write still goes out with its batch, and the
    # task's next run finds the answer: no second provider call.
    if record is None:
        attempt = task.retried + 1
        stored = await pipeline.store.store_first_answer(new, outcome, attempt, started_at=started_at)
        return stored, True
    return await pipeline.store.mark_succeeded(record, outcome), True


async def _attempt_failed(
    pipeline: Pipeline, task: Task, exc: LLMError, on_attempt_error: AttemptErrorHook | None
) -> NoReturn:
    final = isinstance(exc, LLMFatalError) or is_last_attempt(task)
    message = str(exc)
    log.warning("provider call failed (%s, final=%s): %s", exc.reason, final, message)
    if on_attempt_error is not None:
        await on_attempt_error(message, final)
    if final:
        await fail_task(pipeline, task, message, exc.reason)
    await pipeline.store.mark_failed(task.id, message, final=False)
    TASKS_FAILED.labels(type=task.type, reason=exc.reason).inc()
    metrics_go.task_failed(task.type, exc.reason)
    retry_after = getattr(exc, "retry_after", None)
    if retry_after is not None:
        raise RetryIn(retry_after, message) from exc
    raise exc


def retry_delay_for(settings: Settings) -> RetryDelay:
    """Exponential backoff with jitter (or the Go original's linear one for LLM tasks); callbacks and LLM
    calls have their own base delay."""

    def delay(retried: int, error: BaseException, task: Task) -> float:
        callback = task.type == TYPE_CALLBACK_DELIVER
        if settings.llm_retry_linear and not callback:  # the Go original's RetryDelayFunc
            return min(retried * settings.llm_retry_base_seconds, settings.llm_retry_max_seconds)
        base = settings.callback_retry_base_seconds if callback else settings.llm_retry_base_seconds
        backoff = min(base * 2 ** min(retried, 30), settings.llm_retry_max_seconds)
        return float(backoff * random.uniform(0.8, 1.2))

    return delay
