"""Request and response bodies of the HTTP API (the OpenAPI schema is generated from these)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from sytq.queue import QueueStats
from sytq.strict_json import MAX_BYTES, MAX_DEPTH, JSONObject
from sytq.tasks import ChatMessage

QUEUE_NAME_PATTERN = r"^[A-Za-z0-9_.:-]{1,64}$"
MAX_DELAY_SECONDS = 366 * 24 * 3600


class _Body(BaseModel):
    # Unknown fields are an error: a typo such as "callbak_url" must not be silently dropped.
    # NaN/Infinity (and 1e400, read as Infinity) are refused: no database stores them as JSON.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class ChatTaskRequest(_Body):
    """One chat completion to run. Give ``prompt`` (the seed contract) or ``messages``."""

    prompt: str | None = Field(default=None, min_length=1, description="A single user message")
    model: str | None = Field(
        default=None, min_length=1, max_length=128, description="Default: deepseek-chat"
    )
    callback_url: str | None = Field(
        default=None, min_length=1, max_length=2048, description="Receives a signed POST when the task ends"
    )
    messages: list[ChatMessage] | None = Field(default=None, min_length=1, max_length=1000)
    system: str | None = Field(default=None, max_length=1_000_000)
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: int | None = Field(default=None, ge=1, le=1_000_000)
    top_p: float | None = Field(default=None, gt=0, le=1)
    stop: list[str] | None = Field(default=None, max_length=16)
    response_format: JSONObject | None = None
    metadata: JSONObject | None = Field(
        default=None,
        description=f"Echoed back in the callback. Finite numbers only, at most {MAX_DEPTH} levels deep "
        f"and {MAX_BYTES} bytes of JSON",
    )
    queue: str | None = Field(default=None, pattern=QUEUE_NAME_PATTERN)
    delay_seconds: int | None = Field(default=None, ge=0, le=MAX_DELAY_SECONDS)
    process_at: datetime | None = Field(default=None, description="RFC 3339 time with an offset")
    max_retry: int | None = Field(default=None, ge=0, le=100)
    timeout_seconds: int | None = Field(default=None, ge=1, le=24 * 3600)

    @model_validator(mode="after")
    def _one_source_one_schedule(self) -> ChatTaskRequest:
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("give exactly one of prompt or messages")
        if self.delay_seconds is not None and self.process_at is not None:
            raise ValueError("give at most one of delay_seconds or process_at")
        if self.process_at is not None and self.process_at.tzinfo is None:
            raise ValueError("process_at needs a time zone offset, e.g. 2030-01-01T00:00:00Z")
        return self

    def text_size(self) -> int:
        """Characters of prompt text, for the prompt size cap."""
        size = len(self.prompt or "") + len(self.system or "")
        if self.messages:
            size += sum(len(m.content) for m in self.messages)
        return size


class TaskAccepted(BaseModel):
    task_id: str
    status: Literal["enqueued"] = "enqueued"


class BatchRequest(_Body):
    tasks: list[ChatTaskRequest] = Field(min_length=1)


class BatchItemResult(BaseModel):
    index: int
    task_id: str | None = None
    status: Literal["enqueued", "error"]
    error: str | None = None


class BatchResponse(BaseModel):
    enqueued: int
    failed: int
    results: list[BatchItemResult]


class ProcessTaskRequest(BaseModel):
    """The Go original's request. Extra fields are ignored, as the original's JSON binding did."""

    model_config = ConfigDict(extra="ignore")

    table_name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_]+$")
    id: int = Field(ge=1, le=2**63 - 1)


class Envelope(BaseModel):
    """The Go original's response envelope."""

    code: int
    message: str
    data: TaskAccepted | None = None


class TaskResult(BaseModel):
    content: str | None = None
    reasoning_content: str | None = None
    finish_reason: str | None = None
    model: str | None = None


class TaskView(BaseModel):
    """What the system knows about one task: its queue state and, once finished, its stored result."""

    task_id: str
    type: str | None = None
    queue: str | None = None
    state: str = Field(
        description="pending, scheduled, active, retry, archived, completed, succeeded, failed"
    )
    status: str | None = Field(default=None, description="The stored row's status, when there is one")
    attempts: int = 0
    max_retry: int | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    next_process_at: datetime | None = None
    last_failed_at: datetime | None = None
    completed_at: datetime | None = None
    result: TaskResult | None = None
    usage: dict[str, Any] | None = None
    error: str | None = None
    callback_status: str | None = None
    metadata: dict[str, Any] | None = None


class TaskList(BaseModel):
    tasks: list[TaskView]
    next_cursor: str | None = None


class QueueList(BaseModel):
    # The queue engine's own stats record is the schema: one definition, no copy to drift.
    queues: list[QueueStats]


class ErrorBody(BaseModel):
    detail: str | list[dict[str, Any]]
