"""Queue statistics and pause/resume."""

from __future__ import annotations

import dataclasses

from fastapi import APIRouter, Depends, Path, Request

from api.auth import ApiKey
from api.models import QUEUE_NAME_PATTERN, QueueList, QueueView
from api.security import require
from api.state import app_state
from sytq.queue import Inspector

router = APIRouter(tags=["queues"])

QUEUE = Path(pattern=QUEUE_NAME_PATTERN)


async def _view(inspector: Inspector, queue: str) -> QueueView:
    stats = await inspector.queue_stats(queue)
    fields = {f.name: getattr(stats, f.name) for f in dataclasses.fields(stats)}
    return QueueView.model_validate({k: v for k, v in fields.items() if k in QueueView.model_fields})


@router.get("/api/v1/queues", response_model=QueueList, responses={401: {}, 403: {}, 503: {}})
async def list_queues(request: Request, _: ApiKey = Depends(require("read"))) -> QueueList:  # noqa: B008
    inspector = app_state(request).inspector
    return QueueList(queues=[await _view(inspector, q) for q in sorted(await inspector.queues())])


@router.post("/api/v1/queues/{queue}/pause", response_model=QueueView, responses={401: {}, 403: {}, 503: {}})
async def pause_queue(
    request: Request,
    queue: str = QUEUE,
    _: ApiKey = Depends(require("admin")),  # noqa: B008
) -> QueueView:
    inspector = app_state(request).inspector
    await inspector.pause_queue(queue)
    return await _view(inspector, queue)


@router.post("/api/v1/queues/{queue}/resume", response_model=QueueView, responses={401: {}, 403: {}, 503: {}})
async def resume_queue(
    request: Request,
    queue: str = QUEUE,
    _: ApiKey = Depends(require("admin")),  # noqa: B008
) -> QueueView:
    inspector = app_state(request).inspector
    await inspector.unpause_queue(queue)
    return await _view(inspector, queue)
