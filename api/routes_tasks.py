"""Reading and steering tasks: get, list, cancel, retry."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request

from api.auth import ApiKey, Scope
from api.models import QUEUE_NAME_PATTERN, TaskList, TaskView
from api.ownership import ensure_visible, may_see, owner_of
from api.security import require
from api.state import app_state
from api.task_view import merge
from sytq.queue import Inspector, TaskInfo, TaskNotFoundError, TaskState
from sytq.tasks import DEFAULT_QUEUE

router = APIRouter(tags=["tasks"])
# GET of one task on its own router: resource mode mounts its own GET (api.resource_lookup) instead.
get_router = APIRouter(tags=["tasks"])

TASK_ID = Path(min_length=1, max_length=256, pattern=r"^[^\x00-\x1f/]+$")
ListableState = Literal["pending", "active", "scheduled", "retry", "archived", "completed"]


@get_router.get(
    "/api/v1/tasks/{task_id}", response_model=TaskView, responses={401: {}, 403: {}, 404: {}, 503: {}}
)
async def get_task(
    request: Request,
    task_id: str = TASK_ID,
    key: ApiKey = Depends(require("read")),  # noqa: B008
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
    ensure_visible(key, task_id, info, record)
    return merge(task_id, info, record)


@router.get("/api/v1/tasks", response_model=TaskList, responses={401: {}, 403: {}, 503: {}})
async def list_tasks(
    request: Request,
    state: ListableState = "pending",
    queue: str = Query(DEFAULT_QUEUE, pattern=QUEUE_NAME_PATTERN),
    limit: int = Query(50, ge=1, le=1000),
    cursor: str | None = Query(None, pattern=r"^[0-9]{1,9}$", description="next_cursor of the previous page"),
    key: ApiKey = Depends(require("read")),  # noqa: B008
) -> TaskList:
    """A non-admin caller sees only its own tasks: a page may then hold fewer than ``limit``; follow
    ``next_cursor`` until it is null."""
    app = app_state(request)
    page = int(cursor or 0)
    infos = await app.inspector.list_tasks(queue, TaskState(state), page_size=limit, page=page)
    return TaskList(
        tasks=[merge(i.id, i, None) for i in infos if may_see(key, owner_of(i))],
        next_cursor=str(page + 1) if len(infos) == limit else None,
    )


_MOVE_RESPONSES: dict[int | str, dict[str, object]] = {401: {}, 403: {}, 404: {}, 409: {}, 503: {}}
Move = Callable[[Inspector, TaskInfo], Awaitable[object]]


def _cancel_running(inspector: Inspector, info: TaskInfo) -> Awaitable[object]:
    return inspector.cancel_task(info.id)


def _archive(inspector: Inspector, info: TaskInfo) -> Awaitable[object]:
    return inspector.archive_task(info.queue, info.id)


def _run_now(inspector: Inspector, info: TaskInfo) -> Awaitable[object]:
    return inspector.run_task(info.queue, info.id)


# What each endpoint does in each queue state; any other state is a 409.
_CANCEL: dict[str, Move] = {
    "active": _cancel_running,
    "pending": _archive,
    "scheduled": _archive,
    "retry": _archive,
}
_RETRY: dict[str, Move] = {"archived": _run_now, "retry": _run_now, "scheduled": _run_now}


def _move_route(action: str, scope: Scope, moves: dict[str, Move], refusal: str, doc: str) -> None:
    """``POST /api/v1/tasks/{task_id}/<action>``: the task's queue state picks the move."""

    async def endpoint(
        request: Request,
        task_id: str = TASK_ID,
        key: ApiKey = Depends(require(scope)),  # noqa: B008
    ) -> TaskView:
        return await _move(request, key, task_id, moves, refusal)

    endpoint.__doc__ = doc
    router.post(
        f"/api/v1/tasks/{{task_id}}/{action}",
        name=f"{action}_task",  # the operation id and summary, as for a plain function of that name
        response_model=TaskView,
        responses=_MOVE_RESPONSES,
    )(endpoint)


_move_route(
    "cancel",
    "submit",
    _CANCEL,
    "only unfinished tasks can be cancelled",
    "Pending/scheduled/retry tasks are archived; a running one is told to stop (asynq cancel).",
)
_move_route(
    "retry",
    "submit",
    _RETRY,
    "only archived, retry or scheduled tasks can be run",
    "Move an archived (or waiting-to-retry) task back to pending.",
)


async def _move(
    request: Request, key: ApiKey, task_id: str, moves: dict[str, Move], refusal: str
) -> TaskView:
    state = app_state(request)
    info = await _find(state.inspector, task_id)
    ensure_visible(key, task_id, info)
    move = moves.get(str(info.state))
    if move is None:
        raise HTTPException(409, f"task {task_id} is {info.state}; {refusal}")
    await move(state.inspector, info)
    return merge(task_id, await _find(state.inspector, task_id), None)


async def _find(inspector: Inspector, task_id: str) -> TaskInfo:
    try:
        return await inspector.find_task(task_id)
    except TaskNotFoundError as exc:
        raise HTTPException(404, f"task {task_id} not found") from exc
