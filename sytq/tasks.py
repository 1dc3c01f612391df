"""Task types on the queue and their payloads (the contract between producers and workers).

``llm:process`` keeps the Go original's payload byte for byte (``{"table_name":..,"id":..}``),
so tasks enqueued by the original system run here unchanged.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from sytq.strict_json import JSONObject

TYPE_LLM_CHAT = "llm:chat"
TYPE_LLM_PROCESS = "llm:process"
TYPE_CALLBACK_DELIVER = "callback:deliver"
TASK_TYPES = (TYPE_LLM_CHAT, TYPE_LLM_PROCESS, TYPE_CALLBACK_DELIVER)
DEFAULT_QUEUE = "default"
MAX_CALLBACK_URL_CHARS = 2048
# A task's row is written in one statement, which must stay under the database's max_allowed_packet
# (MariaDB's default 16 MiB, MySQL 8's 64 MiB): queue payloads and API bodies stop at half the smaller.
MAX_PAYLOAD_BYTES = 8 * 1024 * 1024
# asynq TaskMessage header naming the API caller (key or Basic user) that submitted an
# llm:process task: the tenant allowed to read, list, cancel and retry it (llm:chat names it in
# the payload's client_id). asynq (Go) carries headers untouched.
OWNER_HEADER = "sytq-owner"

Role = Literal["system", "user", "assistant", "tool"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class ChatMessage(_Strict):
    role: Role
    content: str = Field(max_length=1_000_000)


class LLMParameters(_Strict):
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: int | None = Field(default=None, ge=1, le=1_000_000)
    top_p: float | None = Field(default=None, gt=0, le=1)
    stop: list[str] | None = Field(default=None, max_length=16)
    response_format: JSONObject | None = None

    @field_validator("response_format")
    @classmethod
    def _check_response_format(cls, value: JSONObject | None) -> JSONObject | None:
        if value is not None and value.get("type") not in ("text", "json_object"):
            raise ValueError("response_format.type must be 'text' or 'json_object'")
        return value


class LLMChatPayload(_Strict):
    """Payload of ``llm:chat``: a whole conversation to send to the provider."""

    model: str = Field(min_length=1, max_length=128)
    messages: list[ChatMessage] = Field(min_length=1, max_length=1000)
    parameters: LLMParameters = LLMParameters()
    callback_url: str | None = Field(default=None, max_length=MAX_CALLBACK_URL_CHARS)
    metadata: JSONObject = Field(default_factory=dict)
    client_id: str | None = Field(default=None, max_length=128)
    # Set when the task was asked for as an LLMTask resource: "namespace/name".
    resource: str | None = Field(default=None, max_length=512)

    @model_validator(mode="after")
    def _needs_user_turn(self) -> LLMChatPayload:
        if not any(m.role == "user" for m in self.messages):
            raise ValueError("messages must contain at least one user message")
        return self


class LLMProcessPayload(BaseModel):
    """Payload of ``llm:process``, exactly as the Go original enqueued it."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    table_name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_]+$")
    id: int = Field(ge=1)


def read_chat_payload(raw: bytes) -> LLMChatPayload:
    """An llm:chat payload read from the queue; ValueError (pydantic's ValidationError included)
    for one the worker must refuse, whoever enqueued it."""
    if len(raw) > MAX_PAYLOAD_BYTES:
        raise ValueError(f"{len(raw)} bytes, more than the {MAX_PAYLOAD_BYTES} a task's row can hold")
    return LLMChatPayload.model_validate_json(raw)


def salvage_callback_url(payload: bytes) -> str | None:
    """The ``callback_url`` of an llm:chat payload that failed validation, if it can still be read,
    so the caller hears of the failure (the URL is checked again when the callback is sent)."""
    try:
        document = json.loads(payload)
    except (ValueError, RecursionError):
        return None
    url = document.get("callback_url") if isinstance(document, dict) else None
    if isinstance(url, str) and 0 < len(url) <= MAX_CALLBACK_URL_CHARS:
        return url
    return None


class CallbackPayload(_Strict):
    """Payload of ``callback:deliver``: one signed POST to the caller."""

    task_id: str
    url: str = Field(max_length=2048)
    body: dict[str, Any]


def build_messages(
    prompt: str | None, messages: list[ChatMessage] | None, system: str | None
) -> list[ChatMessage]:
    """The conversation for a submit that gives either a prompt or messages, plus an optional system."""
    if (prompt is None) == (messages is None):
        raise ValueError("give exactly one of prompt or messages")
    convo: list[ChatMessage] = []
    if system:
        convo.append(ChatMessage(role="system", content=system))
    if prompt is not None:
        convo.append(ChatMessage(role="user", content=prompt))
    else:
        assert messages is not None
        convo.extend(messages)
    return convo
