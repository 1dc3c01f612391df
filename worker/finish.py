"""What happens once a task's row is final: the result summary for the queue and the callback task."""

from __future__ import annotations

import logging
import time
from typing import Any

import pydantic_core

from sytq.callbacks import callback_body, record_callback_body
from sytq.queue import Task, TaskIdConflictError
from sytq.storage import CALLBACK_DELIVERED, CALLBACK_PENDING, STATUS_SUCCEEDED, TaskRecord
from sytq.tasks import TYPE_CALLBACK_DELIVER, TYPE_LLM_PROCESS, CallbackPayload
from worker.pipeline import Pipeline

log = logging.getLogger(__name__)
PREVIEW_BYTES = 1024


def callback_task_id(task_id: str) -> str:
    """One callback per task, even when the task itself is delivered twice."""
    return f"{task_id}:cb"


def content_preview(content: str | None) -> str:
    """The first PREVIEW_BYTES bytes of content, never cutting a UTF-8 character in half."""
    return (content or "").encode()[:PREVIEW_BYTES].decode(errors="ignore")


def result_summary(record: TaskRecord) -> bytes:
    """What the task hash's result holds (the Kubernetes controller reads it)."""
    summary = {
        "content_preview": content_preview(record.content),
        "usage": record.usage,
        "finish_reason": record.finish_reason,
        "model": record.model,
    }
    return pydantic_core.to_json(summary)


def _callback_result(record: TaskRecord) -> dict[str, Any] | None:
    if record.status != STATUS_SUCCEEDED:
        return None
    return {
        "content": record.content,
        "reasoning_content": record.reasoning_content,
        "finish_reason": record.finish_reason,
        "model": record.model,
    }


def _body_for(record: TaskRecord) -> dict[str, Any] | None:
    if record.type == TYPE_LLM_PROCESS:
        # As the original: sent on success only; the time is when the answer was stored.
        if record.status != STATUS_SUCCEEDED:
            return None
        return record_callback_body(record.content or "", int(time.time()))
    return callback_body(
        record.task_id, record.status, _callback_result(record), record.usage, record.error, record.metadata
    )


async def enqueue_callback(pipeline: Pipeline, task: Task, record: TaskRecord) -> None:
    """Queue the signed POST for a finished task (no-op without a URL or once delivered), on the
    callback queue: its own slots in the worker, so slow receivers never hold LLM slots."""
    await queue_callback(pipeline, record)


async def queue_callback(pipeline: Pipeline, record: TaskRecord) -> None:
    """``enqueue_callback`` for a task known by its row only (the reconciler's case)."""
    if not record.callback_url or record.callback_status == CALLBACK_DELIVERED:
        return
    body = _body_for(record)
    if body is None:
        if record.callback_status == CALLBACK_PENDING:
            # None is due for this outcome: the row must not look like a callback left behind.
            await pipeline.store.set_callback_state(record.task_id, None, record.callback_attempts, None)
        return
    payload = CallbackPayload(task_id=record.task_id, url=record.callback_url, body=body)
    try:
        await pipeline.queue.enqueue(
            TYPE_CALLBACK_DELIVER,
            payload.model_dump_json().encode(),
            queue=pipeline.settings.callback_queue,
            task_id=callback_task_id(record.task_id),
            max_retry=pipeline.settings.callback_max_attempts - 1,
        )
    except TaskIdConflictError:
        log.info("callback already queued for %s", record.task_id)


async def finish_succeeded(pipeline: Pipeline, task: Task, record: TaskRecord) -> None:
    # Written with the acknowledgement: no Redis round trip of its own on the hot path.
    task.attach_result(result_summary(record))
    await enqueue_callback(pipeline, task, record)
