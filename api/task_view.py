"""One view of a task from its two sources: the queue's TaskInfo and the stored row."""

from __future__ import annotations

import json
from typing import Any

from api.models import TaskResult, TaskView
from sytq.queue import TaskInfo


def _preview(info: TaskInfo) -> dict[str, Any]:
    """The worker's asynq result (``content_preview``, usage, ...), if it wrote one."""
    if not info.result:
        return {}
    try:
        data = json.loads(info.result)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def merge(task_id: str, info: TaskInfo | None, record: Any) -> TaskView:
    """Combine whichever sources exist; the row wins for results, the queue for live state."""
    view = TaskView(task_id=task_id, state="unknown")
    if info is not None:
        preview = _preview(info)
        view.type = info.type
        view.queue = info.queue
        view.state = str(info.state)
        # asynq counts failures in `retried`; a running or finished task is one attempt further.
        view.attempts = info.retried + (0 if str(info.state) in ("pending", "scheduled", "retry") else 1)
        view.max_retry = info.max_retry
        view.next_process_at = info.next_process_at
        view.last_failed_at = info.last_failed_at
        view.completed_at = info.completed_at
        view.error = info.last_error or None
        if preview:
            view.usage = preview.get("usage")
            view.result = TaskResult(
                content=preview.get("content_preview"),
                finish_reason=preview.get("finish_reason"),
                model=preview.get("model"),
            )
    if record is not None:
        view.type = view.type or record.type
        view.queue = view.queue or record.queue
        view.status = record.status
        if info is None:
            view.state = record.status
        view.attempts = max(view.attempts, record.attempts or 0)
        view.created_at = record.created_at
        view.started_at = record.started_at
        view.finished_at = record.finished_at
        if record.content is not None or record.finish_reason is not None:
            view.result = TaskResult(
                content=record.content,
                reasoning_content=record.reasoning_content,
                finish_reason=record.finish_reason,
                model=record.model,
            )
        view.usage = record.usage if record.usage is not None else view.usage
        view.error = record.error or view.error
        view.callback_status = record.callback_status
        view.metadata = record.metadata or None
    return view
