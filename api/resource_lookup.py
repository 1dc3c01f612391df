"""GET /api/v1/tasks/{id} in resource mode: the queue and the database first, as in queue mode;
a task they do not know yet (the controller has not enqueued its LLMTask) is answered from the
LLMTask object itself. Mounted before ``routes_tasks`` when resource mode is on."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Request
from starlette.exceptions import HTTPException

from api import routes_tasks
from api.auth import ApiKey
from api.models import TaskResult, TaskView
from api.ownership import may_see
from api.resource_submitter import ResourceSubmitter
from api.security import require
from api.state import app_state
from sytq.k8s_resources import CLIENT_ANNOTATION, PHASE_PENDING, PHASE_QUEUED, PHASE_RUNNING, PHASE_SUCCEEDED
from sytq.tasks import DEFAULT_QUEUE, TYPE_LLM_CHAT

router = APIRouter(tags=["tasks"])

# LLMTask phase -> the queue-style state GET reports; the final phases keep their own names.
_STATE_OF_PHASE = {PHASE_PENDING: "pending", PHASE_QUEUED: "pending", PHASE_RUNNING: "active"}


@router.get(
    "/api/v1/tasks/{task_id}", response_model=TaskView, responses={401: {}, 403: {}, 404: {}, 503: {}}
)
async def get_task_or_llmtask(
    request: Request,
    task_id: str = routes_tasks.TASK_ID,
    key: ApiKey = Depends(require("read")),  # noqa: B008
) -> TaskView:
    try:
        return await routes_tasks.get_task(request, task_id, key)
    except HTTPException as exc:
        if exc.status_code not in (404, 503):
            raise
        submitter = app_state(request).submitter
        obj = await submitter.find(task_id) if isinstance(submitter, ResourceSubmitter) else None
        # The controller enqueues without the submitter's name: the object's annotation carries it.
        if obj is None or not may_see(key, (obj["metadata"].get("annotations") or {}).get(CLIENT_ANNOTATION)):
            raise
        return view_of_llmtask(task_id, obj)


def _time(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) and value else None


def view_of_llmtask(task_id: str, obj: dict[str, Any]) -> TaskView:
    """What the LLMTask object says about its task (its status is the controller's mirror)."""
    spec: dict[str, Any] = obj.get("spec") or {}
    status: dict[str, Any] = obj.get("status") or {}
    phase = str(status.get("phase") or PHASE_PENDING)
    usage = status.get("usage")
    preview = status.get("resultPreview")
    return TaskView(
        task_id=task_id,
        type=TYPE_LLM_CHAT,
        queue=spec.get("queue") or DEFAULT_QUEUE,
        state=_STATE_OF_PHASE.get(phase, phase.lower()),
        status=phase.lower(),
        attempts=int(status.get("attempts") or 0),
        max_retry=spec.get("maxRetries"),
        created_at=_time(obj["metadata"].get("creationTimestamp")),
        started_at=_time(status.get("startTime")),
        finished_at=_time(status.get("completionTime")),
        result=TaskResult(content=preview, finish_reason=status.get("finishReason"), model=spec.get("model"))
        if phase == PHASE_SUCCEEDED and preview is not None
        else None,
        usage={
            "prompt_tokens": usage.get("promptTokens"),
            "completion_tokens": usage.get("completionTokens"),
            "total_tokens": usage.get("totalTokens"),
        }
        if isinstance(usage, dict)
        else None,
        error=status.get("error"),
    )
