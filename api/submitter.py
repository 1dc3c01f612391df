"""Where a submit goes: the seam between the HTTP layer and the queue.

``QueueSubmitter`` enqueues straight onto the asynq-layout queue. The resource mode
(``SYTQ_API_RESOURCE_MODE``) plugs in another ``TaskSubmitter`` that creates LLMTask objects
instead; routes only ever talk to this protocol.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import NamedTuple, Protocol

from sytq.queue import EnqueueRequest, QueueClient, TaskIdConflictError
from sytq.tasks import DEFAULT_QUEUE, OWNER_HEADER, TYPE_LLM_CHAT, TYPE_LLM_PROCESS, LLMChatPayload


class AlreadySubmitted(Exception):
    """A submit with this task id exists already (an idempotent repeat)."""

    def __init__(self, task_id: str) -> None:
        super().__init__(f"task {task_id} already exists")
        self.task_id = task_id


class ChatSubmission(NamedTuple):
    """One validated chat submit. A tuple rather than a frozen dataclass: one is built per task of
    a batch, and a frozen dataclass costs several times more to build."""

    task_id: str
    payload_json: bytes  # the llm:chat payload, serialized once (``LLMChatPayload`` JSON)
    queue: str
    max_retry: int
    timeout_seconds: float
    retention_seconds: float
    process_at: datetime | None = None
    process_in: float | None = None

    @property
    def payload(self) -> LLMChatPayload:
        """The payload as a model, for submitters that need its fields (read back from the JSON)."""
        return LLMChatPayload.model_validate_json(self.payload_json)


class TaskSubmitter(Protocol):
    async def submit_chat(self, item: ChatSubmission) -> str:
        """Enqueue one chat task; raises AlreadySubmitted when its id exists."""

    def submit_chat_soon(self, item: ChatSubmission) -> asyncio.Future[str]:
        """``submit_chat`` as a future, for the API's direct path (it answers from a callback). Its
        item has a fresh id; should that id exist, the future fails with AlreadySubmitted or the
        queue's TaskIdConflictError."""

    async def submit_chat_many(self, items: Sequence[ChatSubmission]) -> list[str | Exception]:
        """Enqueue many in one round trip; per item the task id or the error."""

    def submit_process(
        self, task_id: str, table_name: str, record_id: int, owner: str
    ) -> asyncio.Future[str]:
        """Enqueue the Go original's ``llm:process`` task on behalf of ``owner``: the future of its
        task id (a future, not a coroutine: the API's direct path answers from its callback)."""


# json.dumps(str) without its dispatch: the same C function writes the same bytes.
_json_string: Callable[[str], str] = json.encoder.encode_basestring_ascii


def process_payload(table_name: str, record_id: int) -> bytes:
    """``{"table_name":"x","id":1}``: byte for byte what Go's json.Marshal produced for the original
    (what ``json.dumps(..., separators=(",", ":"))`` writes, without building an encoder per call)."""
    return f'{{"table_name":{_json_string(table_name)},"id":{record_id:d}}}'.encode()


def _request(item: ChatSubmission) -> EnqueueRequest:
    # Positional (type, payload, queue, task_id, max_retry, timeout, deadline, process_at,
    # process_in, unique_for, retention, headers): keywords cost twice as much, once per task.
    return EnqueueRequest(
        TYPE_LLM_CHAT,
        item.payload_json,
        item.queue,
        item.task_id,
        item.max_retry,
        item.timeout_seconds,
        None,
        item.process_at,
        item.process_in,
        None,
        item.retention_seconds or None,
        None,
    )


class QueueSubmitter:
    """Enqueues directly. QueueClient coalesces concurrent ``enqueue`` calls into one round trip,
    so many simultaneous single submits cost Redis about what one batch does."""

    def __init__(self, client: QueueClient) -> None:
        self._client = client

    async def submit_chat(self, item: ChatSubmission) -> str:
        try:
            return await self.submit_chat_soon(item)
        except TaskIdConflictError as exc:
            raise AlreadySubmitted(item.task_id) from exc

    def submit_chat_soon(self, item: ChatSubmission) -> asyncio.Future[str]:
        return self._client.enqueue_request_id_soon(_request(item))

    async def submit_chat_many(self, items: Sequence[ChatSubmission]) -> list[str | Exception]:
        outcomes = await self._client.enqueue_ids([_request(i) for i in items])
        results: list[str | Exception] = []
        for item, outcome in zip(items, outcomes, strict=True):
            if isinstance(outcome, str):
                results.append(outcome)
            elif isinstance(outcome, TaskIdConflictError):
                results.append(AlreadySubmitted(item.task_id))
            else:
                results.append(outcome)
        return results

    def submit_process(
        self, task_id: str, table_name: str, record_id: int, owner: str
    ) -> asyncio.Future[str]:
        # Default options, default queue: exactly what the original's asynq.Client.Enqueue did (the
        # owner header is extra; Go workers ignore it). A chat task names its owner in the payload's
        # client_id instead: a header costs more to encode than the rest of the message.
        request = EnqueueRequest(
            TYPE_LLM_PROCESS,
            process_payload(table_name, record_id),
            DEFAULT_QUEUE,
            task_id,
            headers={OWNER_HEADER: owner},
        )
        return self._client.enqueue_request_id_soon(request)
