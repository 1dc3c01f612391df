"""Tenant isolation: a caller sees and steers only the tasks it submitted, unless it is an admin.

Reusable by every read route (v1 and the Go original's): ``owner_of`` says who submitted a task
from what the queue and the database hold; ``ensure_visible`` turns "not yours" into the same 404
as "no such task", so a task's existence never leaks to another tenant.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import HTTPException

from api.auth import ApiKey
from sytq.queue import TaskInfo
from sytq.tasks import OWNER_HEADER, TYPE_LLM_CHAT


def owner_of(info: TaskInfo | None, record: Any = None) -> str | None:
    """The submitter's name: the queue message's owner header (llm:process), else the chat
    payload's client_id, else the stored row's client_id; None if unknown (a task from a Go
    client or the asynq CLI: only admins see it)."""
    if info is not None:
        owner = info.headers.get(OWNER_HEADER)
        if owner:
            return owner
        if info.type == TYPE_LLM_CHAT:
            try:
                payload = json.loads(info.payload)
            except ValueError:
                payload = None
            client = payload.get("client_id") if isinstance(payload, dict) else None
            if isinstance(client, str) and client:
                return client
    client_id = getattr(record, "client_id", None) if record is not None else None
    return client_id if isinstance(client_id, str) and client_id else None


def may_see(key: ApiKey, owner: str | None, *, unowned: bool = False) -> bool:
    """``unowned``: a task nobody owns (enqueued outside this API) is visible to every caller too."""
    if owner is None:
        return key.is_admin or unowned
    return key.is_admin or owner == key.name


def may_see_original(key: ApiKey, owner: str | None) -> bool:
    """The Go original's read routes: every login saw every task there, and the tasks its API
    enqueued (before a switch to ours) carry no owner; they stay visible to every caller so a
    PHP app polling them keeps working. Tasks submitted through this API stay per tenant."""
    return may_see(key, owner, unowned=True)


def ensure_visible(key: ApiKey, task_id: str, info: TaskInfo | None, record: Any = None) -> None:
    """404 (the answer for a missing task) unless ``key`` submitted the task or is an admin."""
    if not may_see(key, owner_of(info, record)):
        raise HTTPException(404, f"task {task_id} not found")
