"""Handler for ``llm:process``: the Go original's record mode.

Reads ``sys_message``/``user_message``/``callback_url`` from an allowlisted table row, writes back
``status`` (processing / done / failed strings from settings), ``report`` (the answer),
``failed_times`` and ``failed_info`` on every failed attempt, and ``current_task_node``.
"""

from __future__ import annotations

from pydantic import ValidationError

from sytq.log_setup import task_context
from sytq.metrics import RECORDS_PROCESSED, TASKS_PROCESSED, labelled
from sytq.queue import Task
from sytq.storage import NewTask, RecordTableNotAllowed
from sytq.tasks import LLMProcessPayload
from worker.finish import finish_succeeded
from worker.llm_run import fail_before_start, run_llm
from worker.pipeline import Pipeline


async def handle_process(pipeline: Pipeline, task: Task) -> None:
    with task_context(task.id, task.type):
        records, settings = pipeline.records, pipeline.settings
        try:
            payload = LLMProcessPayload.model_validate_json(task.payload)
            record = await records.fetch(payload.table_name, payload.id)
        except (ValidationError, RecordTableNotAllowed) as exc:
            await fail_before_start(pipeline, task, f"invalid llm:process task: {exc}", "invalid_payload")
        table, record_id = payload.table_name, payload.id
        if record is None:
            message = f"{table} has no row with id {record_id}"
            await fail_before_start(pipeline, task, message, "record_missing")
        if not (record.user_message or "").strip():
            message = f"{table} row {record_id}: user_message is empty"
            await records.mark_failed(table, record_id, settings.record_status_failed, message)
            await fail_before_start(pipeline, task, message, "invalid_payload")
        messages = [{"role": "user", "content": record.user_message}]
        if record.sys_message:
            messages.insert(0, {"role": "system", "content": record.sys_message})
        new = NewTask(
            task_id=task.id,
            type=task.type,
            queue=task.queue,
            model=settings.llm_default_model,
            messages=messages,
            parameters={},
            metadata={"table_name": table, "id": record_id},
            callback_url=record.callback_url,
        )

        async def on_attempt_error(message: str, final: bool) -> None:
            status = settings.record_status_failed if final else None
            await records.mark_failed(table, record_id, status, message)
            if final:
                RECORDS_PROCESSED.labels(table=table, outcome="failed").inc()

        await records.mark_processing(table, record_id, settings.record_status_processing)
        stored, called = await run_llm(pipeline, task, new, on_attempt_error=on_attempt_error)
        await records.mark_done(table, record_id, settings.record_status_done, stored.content or "")
        await finish_succeeded(pipeline, task, stored)
        RECORDS_PROCESSED.labels(table=table, outcome="done").inc()
        labelled(TASKS_PROCESSED, task.type, "succeeded" if called else "reused").inc()
