"""Queue statistics and pause/resume."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Path, Request

from api.auth import ApiKey
from api.models import QUEUE_NAME_PATTERN, QueueList
from api.security import require
from api.state import app_state
from sytq.queue import QueueStats

router = APIRouter(tags=["queues"])

QUEUE = Path(pattern=QUEUE_NAME_PATTERN)


@router.get("/api/v1/queues", response_model=QueueList, responses={401: {}, 403: {}, 503: {}})
async def list_queues(request: Request, _: ApiKey = Depends(require("read"))) -> QueueList:  # noqa: B008
    inspector = app_state(request).inspector
    return QueueList(queues=[await inspector.queue_stats(q) for q in sorted(await inspector.queues())])


async def _set_paused(request: Request, queue: str, paused: bool) -> QueueStats:
    inspector = app_state(request).inspector
    await (inspector.pause_queue(queue) if paused else inspector.unpause_queue(queue))
    return await inspector.queue_stats(queue)


_ADMIN = Depends(require("admin"))
_RESPONSES: dict[int | str, dict[str, object]] = {401: {}, 403: {}, 404: {}, 503: {}}


@router.post("/api/v1/queues/{queue}/pause", response_model=QueueStats, responses=_RESPONSES)
async def pause_queue(request: Request, queue: str = QUEUE, _: ApiKey = _ADMIN) -> QueueStats:
    """Workers stop taking tasks from the queue; submits still enqueue."""
    return await _set_paused(request, queue, True)


@router.post("/api/v1/queues/{queue}/resume", response_model=QueueStats, responses=_RESPONSES)
async def resume_queue(request: Request, queue: str = QUEUE, _: ApiKey = _ADMIN) -> QueueStats:
    return await _set_paused(request, queue, False)
