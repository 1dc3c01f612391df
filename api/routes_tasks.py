"""Reading and steering tasks: get, list, cancel, retry."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request

from api.auth import ApiKey
from api.models import QUEUE_NAME_PATTERN, TaskList, TaskView
from api.security import require
from api.state import app_state
from api.task_view import merge
from sytq.queue import Inspector, TaskInfo, TaskNotFoundError, TaskState
from sytq.tasks import DEFAULT_QUEUE

router = APIRouter(tags=["tasks"])

TASK_ID = Path(min_length=1, max_length=256, pattern=r"^[^\x00-\x1f/]+$")
ListableState = Literal["pending", "active", "scheduled", "retry", "archived", "completed"]


@router.get(
    "/api/v1/tasks/{task_id}", response_model=TaskView, responses={401: {}, 403: {}, 404: {}, 503: {}}
)
async def get_task(
    request: Request,
    task_id: str = TASK_ID,
    _: ApiKey = Depends(require("read")),  # noqa: B008
) -> TaskView:
    state = app_state(request)
    info: TaskInfo | None
    try:
        info = await state.inspector.find_task(task_id)
    except TaskNotFoundError:
        info = None
    record, db_answered = await state.get_record(task_id)
    if info is None and record is None:
        if not db_answered:
            raise HTTPException(
                503, "task not on the queue and the database is unavailable", headers={"Retry-After": "2"}
            )
        raise HTTPException(404, f"task {task_id} not found")
    return merge(task_id, info, record)


@router.get("/api/v1/tasks", response_model=TaskList, responses={401: {}, 403: {}, 503: {}})
async def list_tasks(
    request: Request,
    state: ListableState = "pending",
    queue: str = Query(DEFAULT_QUEUE, pattern=QUEUE_NAME_PATTERN),
    limit: int = Query(50, ge=1, le=1000),
    cursor: str | None = Query(None, pattern=r"^[0-9]{1,9}$", description="next_cursor of the previous page"),
    _: ApiKey = Depends(require("read")),  # noqa: B008
) -> TaskList:
    app = app_state(request)
    page = int(cursor or 0)
    infos = await app.inspector.list_tasks(queue, TaskState(state), page_size=limit, page=page)
    return TaskList(
        tasks=[merge(i.id, i, None) for i in infos],
        next_cursor=str(page + 1) if len(infos) == limit else None,
    )


@router.post(
    "/api/v1/tasks/{task_id}/cancel",
    response_model=TaskView,
    responses={401: {}, 403: {}, 404: {}, 409: {}, 503: {}},
)
async def cancel_task(
    request: Request,
    task_id: str = TASK_ID,
    _: ApiKey = Depends(require("submit")),  # noqa: B008
) -> TaskView:
    """Pending/scheduled/retry tasks are archived; a running one is told to stop (asynq cancel)."""
    state = app_state(request)
    info = await _find(state.inspector, task_id)
    task_state = str(info.state)
    if task_state == "active":
        await state.inspector.cancel_task(task_id)
    elif task_state in ("pending", "scheduled", "retry"):
        await state.inspector.archive_task(info.queue, task_id)
    else:
        raise HTTPException(409, f"task {task_id} is {task_state}; only unfinished tasks can be cancelled")
    return merge(task_id, await _find(state.inspector, task_id), None)


@router.post(
    "/api/v1/tasks/{task_id}/retry",
    response_model=TaskView,
    responses={401: {}, 403: {}, 404: {}, 409: {}, 503: {}},
)
async def retry_task(
    request: Request,
    task_id: str = TASK_ID,
    _: ApiKey = Depends(require("admin")),  # noqa: B008
) -> TaskView:
    """Move an archived (or waiting-to-retry) task back to pending."""
    state = app_state(request)
    info = await _find(state.inspector, task_id)
    if str(info.state) not in ("archived", "retry", "scheduled"):
        raise HTTPException(
            409, f"task {task_id} is {info.state}; only archived, retry or scheduled tasks can be run"
        )
    await state.inspector.run_task(info.queue, task_id)
    return merge(task_id, await _find(state.inspector, task_id), None)


async def _find(inspector: Inspector, task_id: str) -> TaskInfo:
    try:
        return await inspector.find_task(task_id)
    except TaskNotFoundError as exc:
        raise HTTPException(404, f"task {task_id} not found on any queue") from exc
