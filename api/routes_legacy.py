"""The Go original's HTTP surface (gin), answered with its bytes: submit, task status, task list, health."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from datetime import datetime

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from api import metrics
from api.auth import ApiKey
from api.fast_lane import Headers, Pending
from api.gobind import BindError, bind_create_task, bind_list_query
from api.gojson import GIN_JSON_TYPE, envelope, gin_json
from api.models import Envelope, ProcessTaskRequest
from api.ownership import may_see_original, owner_of
from api.responses import ReadyResponse
from api.security import BEARER_SECURITY, authenticate, authorize, require
from api.state import AppState, app_state, header_value, raw_header
from sytq.gojson import GoMap, go_string
from sytq.queue import TaskInfo, TaskNotFoundError, TaskState, new_task_id
from sytq.tasks import DEFAULT_QUEUE

log = logging.getLogger("sytq.api")
router = APIRouter(tags=["compat"])

SUBMIT_PATH = "/api/tasks/llm"
STATUS_PATH = "/api/tasks/{task_id}"
# gin's c.FullPath() of our routes whose parameter the original named differently (its metrics' label).
GIN_FULL_PATHS = {STATUS_PATH: "/api/tasks/:id"}
_PROCESS_SUBMITTED = metrics.SUBMITTED.labels("process")
_GIN_JSON_TYPE = GIN_JSON_TYPE.encode()
# Go's time.Time{}.Unix(): what the original shows as created_at for a task with no next run.
GO_ZERO_TIME_UNIX = -62135596800
# ListTasks: limit 1..100 (10 when absent or not positive).
DEFAULT_LIMIT, MAX_LIMIT = 10, 100
# The original's status filter; anything else lists active tasks. It had no "failed" state and
# listed retry tasks for it.
LIST_STATES = {
    "pending": TaskState.PENDING,
    "active": TaskState.ACTIVE,
    "completed": TaskState.COMPLETED,
    "failed": TaskState.RETRY,
    "retry": TaskState.RETRY,
    "archived": TaskState.ARCHIVED,
}
# Redis list and sorted-set ranges are int64: a page beyond this is empty.
_LAST_INDEX = 2**62

_ENVELOPE_DOC: dict[int | str, dict[str, object]] = {400: {}, 401: {}, 403: {}, 429: {}, 500: {}, 503: {}}


def created_at(info: TaskInfo) -> int:
    """``NextProcessAt.Unix()``: now for pending, the due time for scheduled/retry, else Go's zero."""
    moment: datetime | None = info.next_process_at
    return int(moment.timestamp() // 1) if moment is not None else GO_ZERO_TIME_UNIX


@router.post(
    SUBMIT_PATH,
    response_model=Envelope,
    summary="The Go original's contract: process one record of a table (llm:process)",
    responses={**_ENVELOPE_DOC, 413: {}},
    # The hot path reads its own key (dependency injection costs more than the rest of the
    # request); this documents what the signature no longer declares.
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": ProcessTaskRequest.model_json_schema()}},
        },
        "security": BEARER_SECURITY,
    },
)
async def submit_process(request: Request) -> Response:
    state = app_state(request)
    key = await authorize(state, raw_header(request, b"authorization"), "submit", compat=True)
    record = _bound_record(state, await request.body())
    if isinstance(record, Response):
        return record
    enqueued = _enqueue_process(state, key, record)
    with contextlib.suppress(Exception):  # the answer reads the outcome from the future
        await enqueued.future
    return enqueued.finish(enqueued.future)


def submit_process_now(state: AppState, headers: Headers, raw: bytes) -> Response | Pending | None:
    """``submit_process`` without awaiting (the API's direct path): the same answers, or None where
    the route has to await before its enqueue (a rate limit) or to answer a refusal through the
    app's handlers (an unknown caller's 401 is raised here)."""
    if state.limiter.enabled:
        return None
    key = authenticate(state, header_value(headers, b"authorization"), compat=True)
    if not key.allows("submit"):
        return None
    record = _bound_record(state, raw)
    return record if isinstance(record, Response) else _enqueue_process(state, key, record)


def _bound_record(state: AppState, raw: bytes) -> tuple[str, int] | Response:
    """``(table_name, id)`` of an allowed table, or the 400 the original answered."""
    try:
        table_name, record_id = bind_create_task(raw)
    except BindError as exc:
        return gin_json(400, envelope(400, str(exc)))
    if table_name not in state.record_tables:
        message = f"table_name {table_name!r} is not allowed (SYTQ_RECORD_TABLES)"
        return gin_json(400, envelope(400, message))
    return table_name, record_id


def _enqueue_process(state: AppState, key: ApiKey, record: tuple[str, int]) -> Pending:
    try:
        future = state.submitter.submit_process(new_task_id(), record[0], record[1], key.name)
    except Exception as exc:  # refused before it was queued: answered as any failed enqueue
        future = asyncio.get_running_loop().create_future()
        future.set_exception(exc)
    return Pending(future, functools.partial(_process_answer, record))


def _process_answer(record: tuple[str, int], enqueued: asyncio.Future[str]) -> Response:
    exc = enqueued.exception()
    if exc is not None:  # the original answered every enqueue failure the same way
        log.warning("enqueue of llm:process %s/%s failed: %s", record[0], record[1], exc)
        return gin_json(500, envelope(500, "Failed to enqueue task"), {"Retry-After": "2"})
    _PROCESS_SUBMITTED.inc()
    # marshal(envelope(200, "Success", {"task_id": …, "status": "enqueued"})), written directly.
    body = (
        b'{"code":200,"message":"Success","data":{"task_id":%s,"status":"enqueued"}}'
        % go_string(enqueued.result()).encode()
    )
    return ReadyResponse(body, _GIN_JSON_TYPE)


async def _queue_registered(state: AppState, queue: str) -> bool:
    return queue in await state.inspector.queues()


@router.get(
    STATUS_PATH,
    summary="The Go original's task status (default queue)",
    response_class=Response,
    responses=_ENVELOPE_DOC,
)
async def get_task_status(
    request: Request,
    task_id: str,
    key: ApiKey = Depends(require("read")),  # noqa: B008
) -> Response:
    state = app_state(request)
    # The original asked asynq's Inspector for the task on the default queue only.
    if not await _queue_registered(state, DEFAULT_QUEUE):
        return gin_json(500, envelope(500, "Failed to get task info: asynq: queue not found"))
    try:
        info = await state.inspector.get_task(DEFAULT_QUEUE, task_id)
    except TaskNotFoundError:
        info = None
    if info is None or not may_see_original(key, owner_of(info)):
        # Its answer for an unknown id: asynq's error, as a 500 (its 404 branch never ran). Another
        # tenant's task gets the same answer, so its existence does not leak.
        return gin_json(500, envelope(500, "Failed to get task info: asynq: task not found"))
    data = {
        "task_id": info.id,
        "status": str(info.state),
        "queue_name": info.queue,
        "created_at": created_at(info),
        "retry_count": info.retried,
    }
    return gin_json(200, envelope(200, "Success", data))


@router.get(
    "/api/tasks",
    summary="The Go original's task list: ?status=&queue_name=&limit=&offset=",
    response_class=Response,
    responses=_ENVELOPE_DOC,
)
async def list_tasks(request: Request, key: ApiKey = Depends(require("read"))) -> Response:  # noqa: B008
    state = app_state(request)
    try:
        query = bind_list_query(request.scope.get("query_string", b""))
    except BindError as exc:
        return gin_json(400, envelope(400, f"Invalid query parameters: {exc}"))
    limit = DEFAULT_LIMIT if query.limit <= 0 else min(query.limit, MAX_LIMIT)
    offset = max(query.offset, 0)
    queue = query.queue_name or DEFAULT_QUEUE
    task_state = LIST_STATES.get(query.status, TaskState.ACTIVE)
    if not queue.strip():
        message = "Failed to list tasks: asynq: queue name must contain one or more characters"
        return gin_json(500, envelope(500, message))
    if not await _queue_registered(state, queue):
        return gin_json(500, envelope(500, "Failed to list tasks: asynq: queue not found"))
    page = offset // limit  # asynq.Page(offset/limit + 1), counted from one
    infos = (
        []
        if page * limit > _LAST_INDEX
        else await state.inspector.list_tasks(queue, task_state, page_size=limit, page=page)
    )
    tasks = [
        {
            "task_id": info.id,
            "status": str(info.state),
            "queue_name": info.queue,
            "created_at": created_at(info),
            "retry_count": info.retried,
            "type": info.type,
        }
        for info in infos
        if may_see_original(key, owner_of(info))  # a non-admin caller lists only its own (and unowned) tasks
    ]
    # total_count is the page's length: the original said so itself (asynq gives no count).
    data = {"tasks": tasks, "total_count": len(tasks), "limit": limit, "offset": offset}
    return gin_json(200, envelope(200, "Success", data))


def _health(message: str) -> Response:
    return gin_json(200, envelope(200, message, GoMap(status="ok", timestamp=_now())))


def _now() -> int:
    return int(datetime.now().timestamp())


@router.get("/health", summary="The Go original's health check", response_class=Response, tags=["health"])
async def health() -> Response:
    return _health("Service is running")


@router.get("/healthz/live", summary="The Go original's liveness", response_class=Response, tags=["health"])
async def live() -> Response:
    return _health("Service is alive")


@router.get(
    "/healthz/ready",
    summary="The Go original's readiness: the database (and, here, Redis) answer",
    response_class=Response,
    responses={503: {}},
    tags=["health"],
)
async def ready(request: Request) -> Response:
    state = app_state(request)
    problem = None
    database = "ok"
    if not await state.database_ready():
        database, problem = "error", "database ping failed"
    elif not await state.redis_ready():
        problem = "redis ping failed"
    if problem is None:
        data = GoMap(status="ok", database="ok", timestamp=_now())
        return gin_json(200, envelope(200, "Service is ready", data))
    data = GoMap(status="error", database=database, timestamp=_now(), error=problem)
    return gin_json(503, envelope(503, "Service is not ready", data), {"Retry-After": "2"})
