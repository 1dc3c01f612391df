"""Handler for ``llm:process``: the Go original's record mode, leaving rows as the original does.

Reads ``sys_message``/``user_message``/``callback_url`` from an allowlisted table row; writes
``status`` 处理中 when an attempt starts; on success ``status`` 已完成, ``report`` and
``current_task_node + 1``; on a failed attempt ``failed_times + 1``, ``failed_info`` and (by default
on every attempt, as the original) ``status`` 失败. Database errors the data itself causes (missing
table, unknown column, a value the column refuses) fail the task at once; outages are waited out.
"""

from __future__ import annotations

import logging
from typing import NoReturn

from pydantic import ValidationError
from sqlalchemy.exc import DBAPIError

from sytq import metrics_go
from sytq.log_setup import task_context
from sytq.metrics import RECORDS_PROCESSED, TASKS_PROCESSED, labelled
from sytq.queue import SkipRetry, Task
from sytq.storage import NewTask, Record, RecordTableNotAllowed
from sytq.storage.db_errors import describe, is_transient
from sytq.tasks import OWNER_HEADER, LLMProcessPayload
from worker.finish import finish_succeeded
from worker.llm_run import fail_before_start, run_llm
from worker.pipeline import Pipeline

log = logging.getLogger(__name__)


async def _note_failure(pipeline: Pipeline, table: str, record_id: int, message: str) -> None:
    """Best effort: keep the error on the row when the row (and its columns) let us."""
    try:
        await pipeline.records.mark_failed(table, record_id, pipeline.settings.record_status_failed, message)
    except DBAPIError as exc:
        log.warning("%s row %s: cannot store failed_info: %s", table, record_id, describe(exc))


async def _record_broken(
    pipeline: Pipeline,
    task: Task,
    table: str,
    record_id: int,
    exc: DBAPIError,
    reason: str,
    *,
    answered: bool = False,
) -> NoReturn:
    """A permanent database error on the record: fail the task now with the server's message."""
    if is_transient(exc):
        raise exc  # an outage outlasting the wait: the queue retries the task later
    message = f"{table} row {record_id}: {describe(exc)}"
    await _note_failure(pipeline, table, record_id, message)
    RECORDS_PROCESSED.labels(table=table, outcome="failed").inc()
    if answered:  # the answer stays on the task's own row; no success callback for a row left unwritten
        metrics_go.task_failed(task.type, reason)
        raise SkipRetry(message) from exc
    await fail_before_start(pipeline, task, message, reason)


def _request(settings_model: str, max_tokens: int, task: Task, record: Record) -> NewTask:
    """The original's request: system and user message from the row, model and max_tokens from settings."""
    messages = [{"role": "user", "content": record.user_message}]
    if record.sys_message:
        messages.insert(0, {"role": "system", "content": record.sys_message})
    return NewTask(
        task_id=task.id,
        type=task.type,
        queue=task.queue,
        model=settings_model,
        messages=messages,
        parameters={"max_tokens": max_tokens},
        metadata={"table_name": record.table, "id": record.id},
        # The submitter, kept on the row: once the queue drops the finished task, it still may read it.
        client_id=task.headers.get(OWNER_HEADER),
        callback_url=record.callback_url,
    )


async def handle_process(pipeline: Pipeline, task: Task) -> None:
    with task_context(task.id, task.type):
        records, settings = pipeline.records, pipeline.settings
        try:
            payload = LLMProcessPayload.model_validate_json(task.payload)
            records.check_table(payload.table_name)
        except (ValidationError, RecordTableNotAllowed) as exc:
            await fail_before_start(pipeline, task, f"invalid llm:process task: {exc}", "invalid_payload")
        table, record_id = payload.table_name, payload.id
        try:
            record = await records.fetch(table, record_id)
        except DBAPIError as exc:
            await _record_broken(pipeline, task, table, record_id, exc, "record_error")
        if record is None:
            await fail_before_start(
                pipeline, task, f"{table} has no row with id {record_id}", "record_missing"
            )
        if not (record.user_message or "").strip():
            message = f"{table} row {record_id}: user_message is empty"
            await _note_failure(pipeline, table, record_id, message)
            await fail_before_start(pipeline, task, message, "invalid_payload")

        async def on_attempt_error(message: str, final: bool) -> None:
            keep_processing = settings.record_failed_status_final_only and not final
            status = None if keep_processing else settings.record_status_failed
            try:
                await records.mark_failed(table, record_id, status, message)
            except DBAPIError as exc:
                log.warning("%s row %s: cannot count the failed attempt: %s", table, record_id, describe(exc))
            if final:
                RECORDS_PROCESSED.labels(table=table, outcome="failed").inc()

        # A task whose own row is already final was re-delivered after its record was written (or
        # is being written now): setting 处理中 again would leave the row stuck there.
        prior = await pipeline.store.get(task.id)
        if prior is None or not prior.finished:
            try:
                await records.mark_processing(table, record_id, settings.record_status_processing)
            except DBAPIError as exc:
                await _record_broken(pipeline, task, table, record_id, exc, "record_status_error")
        new = _request(settings.llm_default_model, settings.record_max_tokens, task, record)
        stored, called = await run_llm(pipeline, task, new, on_attempt_error=on_attempt_error)
        try:
            # False on a re-delivery whose row already holds this answer: node advanced once only.
            await records.mark_done(table, record_id, settings.record_status_done, stored.content or "")
        except DBAPIError as exc:
            await _record_broken(pipeline, task, table, record_id, exc, "record_result_error", answered=True)
        await finish_succeeded(pipeline, task, stored)
        RECORDS_PROCESSED.labels(table=table, outcome="done").inc()
        labelled(TASKS_PROCESSED, task.type, "succeeded" if called else "reused").inc()
        metrics_go.task_succeeded(task.type)
