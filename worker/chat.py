"""Handler for ``llm:chat``: a whole conversation in the payload."""

from __future__ import annotations

from sytq import metrics_go
from sytq.log_setup import task_context
from sytq.metrics import TASKS_PROCESSED, labelled
from sytq.queue import Task
from sytq.storage import NewTask
from sytq.tasks import LLMChatPayload, read_chat_payload, salvage_callback_url
from worker.finish import finish_succeeded
from worker.llm_run import fail_before_start, run_llm
from worker.pipeline import Pipeline


def chat_request(task_id: str, task_type: str, queue: str, payload: LLMChatPayload) -> NewTask:
    """What an llm:chat task asks for, as its row stores it."""
    return NewTask(
        task_id=task_id,
        type=task_type,
        queue=queue,
        model=payload.model,
        messages=[m.model_dump() for m in payload.messages],
        parameters=payload.parameters.model_dump(exclude_none=True),
        metadata=payload.metadata,
        client_id=payload.client_id,
        callback_url=payload.callback_url,
    )


async def handle_chat(pipeline: Pipeline, task: Task) -> None:
    with task_context(task.id, task.type):
        try:
            payload = read_chat_payload(task.payload)
        except ValueError as exc:
            message = f"invalid llm:chat payload: {exc}"
            url = salvage_callback_url(task.payload)
            await fail_before_start(pipeline, task, message, "invalid_payload", callback_url=url)
        new = chat_request(task.id, task.type, task.queue, payload)
        record, called = await run_llm(pipeline, task, new)
        await finish_succeeded(pipeline, task, record)
        labelled(TASKS_PROCESSED, task.type, "succeeded" if called else "reused").inc()
        metrics_go.task_succeeded(task.type)
