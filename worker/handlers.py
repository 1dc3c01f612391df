"""The handler table the queue server (or the all-in-one ``sytq run``) hosts."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from datetime import UTC, datetime

import redis.asyncio as aioredis

from sytq import metrics_go
from sytq.metrics import TASK_DURATION, labelled
from sytq.queue import Handler, SkipRetry, Task
from sytq.settings import Settings
from sytq.tasks import TYPE_CALLBACK_DELIVER, TYPE_LLM_CHAT, TYPE_LLM_PROCESS
from worker.callback import handle_callback
from worker.chat import handle_chat
from worker.pipeline import Pipeline, build_pipeline
from worker.process import handle_process

log = logging.getLogger(__name__)


def _log_failed_attempt(task: Task, final: bool, error: str) -> None:
    outcome = "giving up" if final else "will retry"
    log.warning(
        "task %s (%s) attempt %d failed, %s: %s", task.id, task.type, task.retried + 1, outcome, error
    )


def logging_failures(handler: Handler) -> Handler:
    """Every failed attempt of a task leaves one warning line with its id, attempt and error."""

    async def run(task: Task) -> None:
        try:
            await handler(task)
        except asyncio.CancelledError:
            # The queue cancels a run at its deadline (a failed attempt), on shutdown or a lost lease
            # (handed back, not failed): only the first is logged.
            if task.deadline is not None and datetime.now(UTC) >= task.deadline:
                _log_failed_attempt(task, task.retried >= task.max_retry, "deadline exceeded")
            raise
        except Exception as exc:
            final = isinstance(exc, SkipRetry) or task.retried >= task.max_retry
            _log_failed_attempt(task, final, str(exc) or type(exc).__name__)
            raise

    return run


def timed(task_type: str, handler: Handler) -> Handler:
    """Each run's time into sytq_task_duration_seconds (and the original's task duration)."""
    ours = labelled(TASK_DURATION, task_type)

    async def run(task: Task) -> None:
        started = time.monotonic()
        try:
            await handler(task)
        finally:
            elapsed = time.monotonic() - started
            ours.observe(elapsed)
            metrics_go.task_ran(task_type, elapsed)

    return run


def handlers_for(pipeline: Pipeline) -> dict[str, Handler]:
    handlers = {
        TYPE_LLM_CHAT: functools.partial(handle_chat, pipeline),
        TYPE_LLM_PROCESS: functools.partial(handle_process, pipeline),
        TYPE_CALLBACK_DELIVER: functools.partial(handle_callback, pipeline),
    }
    return {kind: timed(kind, logging_failures(handler)) for kind, handler in handlers.items()}


def build_handlers(
    settings: Settings, redis: aioredis.Redis, pipeline: Pipeline | None = None
) -> dict[str, Handler]:
    """Handlers for the three task types. For a clean shutdown build the pipeline with
    ``build_pipeline`` yourself, pass it here, and ``await pipeline.close()`` after the server stops."""
    return handlers_for(pipeline or build_pipeline(settings, redis))
