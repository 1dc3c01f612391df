"""What an LLMTask's status should say, given what the queue says about its task.

Pure functions, so the mapping (phases, attempts, conditions, preview) is tested without a cluster.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sytq.k8s_resources import (
    FINAL_PHASES,
    PHASE_FAILED,
    PHASE_QUEUED,
    PHASE_RUNNING,
    PHASE_SUCCEEDED,
    RESULT_PREVIEW_MAX_BYTES,
)
from sytq.queue.models import TaskInfo, TaskState

ERROR_MAX_CHARS = 2000

_PHASE_OF_STATE = {
    TaskState.PENDING: PHASE_QUEUED,
    TaskState.SCHEDULED: PHASE_QUEUED,
    TaskState.ACTIVE: PHASE_RUNNING,
    TaskState.RETRY: PHASE_RUNNING,
    TaskState.COMPLETED: PHASE_SUCCEEDED,
    TaskState.ARCHIVED: PHASE_FAILED,
}


def rfc3339(moment: datetime) -> str:
    # isoformat is a few times cheaper than strftime, and a mirror formats several per read
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="seconds") + "Z"


def attempts_of(info: TaskInfo) -> int:
    """Attempts started so far. asynq counts ``retried`` up on each retry but not on archiving,
    so a running, completed or archived task has made ``retried + 1`` attempts."""
    if info.state in (TaskState.ACTIVE, TaskState.COMPLETED, TaskState.ARCHIVED):
        return info.retried + 1
    return info.retried


def preview(text: str, limit: int = RESULT_PREVIEW_MAX_BYTES) -> str:
    """At most ``limit`` bytes of UTF-8, cut on a character boundary."""
    raw = text.encode("utf-8")
    if len(raw) <= limit:
        return text
    return raw[:limit].decode("utf-8", errors="ignore")


def parse_result(result: bytes | None) -> dict[str, Any]:
    """The status fields carried by a finished task's result JSON (empty if there is none)."""
    if not result:
        return {}
    try:
        data = json.loads(result)
    except ValueError:
        return {"resultPreview": preview(result.decode("utf-8", errors="replace"))}
    if not isinstance(data, dict):
        return {}
    fields: dict[str, Any] = {}
    usage = data.get("usage")
    if isinstance(usage, dict):
        mapped = {
            "promptTokens": usage.get("prompt_tokens"),
            "completionTokens": usage.get("completion_tokens"),
            "totalTokens": usage.get("total_tokens"),
        }
        fields["usage"] = {k: int(v) for k, v in mapped.items() if isinstance(v, int)}
    content = data.get("content_preview", data.get("content"))
    if isinstance(content, str):
        fields["resultPreview"] = preview(content)
    if isinstance(data.get("finish_reason"), str):
        fields["finishReason"] = data["finish_reason"]
    return fields


def condition(
    type_: str, status: bool, reason: str, message: str, *, now: datetime, previous: Mapping[str, Any]
) -> dict[str, Any]:
    """A condition entry; its transition time only moves when its status flips."""
    value = "True" if status else "False"
    old = next((c for c in previous.get("conditions") or [] if c.get("type") == type_), None)
    since = old["lastTransitionTime"] if old and old.get("status") == value else rfc3339(now)
    return {"type": type_, "status": value, "reason": reason, "message": message, "lastTransitionTime": since}


def status_from_task(
    current: Mapping[str, Any], info: TaskInfo, *, task_id: str, result_ref: str, now: datetime
) -> dict[str, Any]:
    """The status an LLMTask should have for the task's queue state (fields we own only). A task
    gone from the queue has no status of its own: the mirror enqueues it again (llmtasks.py)."""
    phase = _PHASE_OF_STATE[info.state]
    status: dict[str, Any] = {"phase": phase, "taskId": task_id, "attempts": attempts_of(info)}
    if phase != PHASE_QUEUED or info.retried:
        status["startTime"] = current.get("startTime") or rfc3339(now)
    if info.last_error:
        status["error"] = info.last_error[:ERROR_MAX_CHARS]
    if phase in FINAL_PHASES:
        finished = info.completed_at or info.last_failed_at or now
        status["completionTime"] = current.get("completionTime") or rfc3339(finished)
    if phase == PHASE_SUCCEEDED:
        status.update(parse_result(info.result))
        status["resultRef"] = result_ref
        status.pop("error", None)
        conditions = [
            condition("Complete", True, "Succeeded", "the model answered", now=now, previous=current)
        ]
    elif phase == PHASE_FAILED:
        conditions = [
            condition(
                "Failed",
                True,
                "BackoffLimitExceeded",
                f"failed after {attempts_of(info)} attempt(s): {info.last_error[:200]}",
                now=now,
                previous=current,
            )
        ]
    elif info.state == TaskState.RETRY:
        conditions = [
            condition("Running", False, "RetryScheduled", info.last_error[:200], now=now, previous=current)
        ]
    elif phase == PHASE_RUNNING:
        conditions = [
            condition("Running", True, "Started", "a worker took the task", now=now, previous=current)
        ]
    else:
        conditions = [
            condition("Queued", True, "Enqueued", f"waiting in queue {info.queue}", now=now, previous=current)
        ]
    status["conditions"] = conditions
    return status


def changed_fields(current: Mapping[str, Any], desired: Mapping[str, Any]) -> dict[str, Any]:
    """The part of ``desired`` that differs from ``current``: the body of a merge patch."""
    return {key: value for key, value in desired.items() if current.get(key) != value}
