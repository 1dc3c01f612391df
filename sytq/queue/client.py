"""The producer side: enqueue tasks in asynq's layout, alone or many in one round trip."""

from __future__ import annotations

import asyncio
import functools
import math
import os
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

import redis.asyncio as aioredis

from sytq import redis_keys as keys
from sytq.coalesce import Coalescer
from sytq.queue import redis_ops
from sytq.queue.codec import TaskMessage, encode_task, to_unix
from sytq.queue.info import task_info
from sytq.queue.models import (
    DuplicateTaskError,
    EnqueueRequest,
    InvalidTaskError,
    QueueError,
    QueueUnavailableError,
    TaskIdConflictError,
    TaskInfo,
    TaskState,
)
from sytq.queue.redis_ops import RedisOps

_BATCH_CHUNK = 1000  # tasks per script call: bounds how long one call holds Redis
DEFAULT_TIMEOUT_SECONDS = 30 * 60  # asynq's default when neither timeout nor deadline is given


def validate_queue_name(queue: str) -> str:
    if not isinstance(queue, str):
        raise InvalidTaskError(f"queue name must be a string, got {type(queue).__name__}")
    return _checked_queue_name(queue)


@functools.lru_cache(maxsize=1024)
def _checked_queue_name(queue: str) -> str:
    name = queue.strip()
    if not name or any(c in name for c in "{}\r\n\t "):
        raise InvalidTaskError(f"invalid queue name {queue!r}")
    return name


class _RandomPool:
    """os.urandom read 4 KiB at a time: one system call per 256 task ids instead of one each.
    A forked child starts with an empty pool, so parent and child never share ids."""

    SIZE = 4096

    def __init__(self) -> None:
        self._hex = ""
        self._at = 0

    def take_hex32(self) -> str:
        """32 random hex digits (16 bytes)."""
        at = self._at
        if at + 32 > len(self._hex):
            self._hex, at = os.urandom(self.SIZE).hex(), 0
        self._at = at + 32
        return self._hex[at : at + 32]

    def reset(self) -> None:
        self._hex, self._at = "", 0


_RANDOM = _RandomPool()
os.register_at_fork(after_in_child=_RANDOM.reset)
_VARIANT = dict(zip("0123456789abcdef", "89ab89ab89ab89ab", strict=True))


def new_task_id() -> str:
    """A random (version 4) UUID string, like asynq's ids; cheaper than str(uuid.uuid4())."""
    h = _RANDOM.take_hex32()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:]}"


class _Prepared:
    """A checked, encoded task. Its TaskMessage and TaskInfo are built only for callers that ask."""

    __slots__ = ("fields", "item", "next_process_at", "queue", "unique")

    def __init__(
        self,
        item: redis_ops.EnqueueItem,
        fields: _NewTaskFields,
        unique: str | None,
        next_process_at: datetime | None,
    ) -> None:
        self.item = item
        self.fields = fields
        self.queue = fields[3]
        self.unique = unique
        self.next_process_at = next_process_at  # None: pending now (the batch's moment)

    @property
    def task_id(self) -> str:
        return self.item[0]

    def info(self, moment: _Moment) -> TaskInfo:
        f = self.fields
        msg = TaskMessage(
            type=f[0],
            payload=f[1],
            id=f[2],
            queue=f[3],
            retry=f[4],
            timeout=f[5],
            deadline=f[6],
            unique_key=f[7],
            retention=f[8],
            headers=f[9],
        )
        if self.next_process_at is None:
            return task_info(msg, TaskState.PENDING, next_process_at=moment.pending_next_at)
        return task_info(msg, TaskState.SCHEDULED, next_process_at=self.next_process_at)


# encode_task's arguments, in its order
_NewTaskFields = tuple[str, bytes, str, str, int, int, int, str, int, dict[str, str]]


class _Moment:
    """One enqueue_many's clock, and what every task due now shares (computed once per batch)."""

    __slots__ = ("now", "pending_next_at", "pending_placement")

    def __init__(self) -> None:
        self.now = time.time()
        self.pending_placement = redis_ops.enqueue_placement(None, time.time_ns(), "", 0)
        self.pending_next_at = datetime.fromtimestamp(self.now, UTC)


def _invalid_number(value: object) -> bool:
    return (
        not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value) or value < 0
    )


_PLAIN_NUMBERS = (float, int)  # exact types: bool is not one of them


def _checked_number(name: str, value: float | None) -> None:
    if value is not None and _invalid_number(value):
        raise InvalidTaskError(f"{name} must be a finite number >= 0, got {value!r}")


def _prepare(req: EnqueueRequest, moment: _Moment) -> _Prepared:
    # Runs for every task of a batch: the checks are written out (no loops over tuples) and take
    # their fast branch for the plain types every caller sends; one unpack instead of a named-field
    # lookup per use.
    (
        type_,
        payload_,
        queue_,
        task_id_,
        max_retry,
        timeout_,
        deadline_,
        process_at_,
        process_in,
        unique_for,
        retention_,
        headers_,
    ) = req
    if not isinstance(type_, str) or not type_.strip():
        raise InvalidTaskError("task type must be a non-empty string")
    if type(payload_) is not bytes and not isinstance(payload_, bytes | bytearray | memoryview):
        raise InvalidTaskError(f"payload must be bytes, got {type(payload_).__name__}")
    queue = _checked_queue_name(queue_) if type(queue_) is str else validate_queue_name(queue_)
    task_id = new_task_id() if task_id_ is None else task_id_
    if not isinstance(task_id, str) or not task_id.strip():
        raise InvalidTaskError("task_id must be a non-empty string")
    if (type(max_retry) is not int or not 0 <= max_retry < 2**31) and (
        not isinstance(max_retry, int) or isinstance(max_retry, bool) or not 0 <= max_retry < 2**31
    ):
        raise InvalidTaskError(f"max_retry must be an integer >= 0, got {max_retry!r}")
    # The usual case, a plain finite timeout and retention and nothing else, skips the four checks.
    plain = (timeout_ is None or (type(timeout_) in _PLAIN_NUMBERS and 0 <= timeout_ < math.inf)) and (
        retention_ is None or (type(retention_) in _PLAIN_NUMBERS and 0 <= retention_ < math.inf)
    )
    if not plain or process_in is not None or unique_for is not None:
        _checked_number("timeout", timeout_)
        _checked_number("process_in", process_in)
        _checked_number("unique_for", unique_for)
        _checked_number("retention", retention_)
    if deadline_ is not None and not isinstance(deadline_, datetime):
        raise InvalidTaskError(f"deadline must be a datetime, got {deadline_!r}")
    if process_at_ is not None and not isinstance(process_at_, datetime):
        raise InvalidTaskError(f"process_at must be a datetime, got {process_at_!r}")
    if unique_for is not None and unique_for < 1:
        raise InvalidTaskError("unique_for must be at least 1 second")
    if process_at_ is not None and process_in is not None:
        raise InvalidTaskError("give process_at or process_in, not both")
    headers: dict[str, str] = {}
    if headers_:
        try:
            headers = dict(headers_)
        except (TypeError, ValueError) as exc:
            raise InvalidTaskError(f"headers must be a mapping of strings: {exc}") from exc
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items()):
            raise InvalidTaskError("headers must map strings to strings")

    now = moment.now
    timeout = math.ceil(timeout_) if timeout_ else 0
    deadline = to_unix(deadline_) if deadline_ is not None else 0
    if not timeout and not deadline:
        timeout = DEFAULT_TIMEOUT_SECONDS
    process_at: float | None = None
    if process_at_ is not None:
        process_at = process_at_.replace(tzinfo=process_at_.tzinfo or UTC).timestamp()
    elif process_in:
        process_at = now + process_in
    if process_at is not None and process_at <= now:
        process_at = None  # due already: straight to pending, as asynq does

    payload = payload_ if type(payload_) is bytes else bytes(payload_)
    unique = keys.unique_key(queue, type_, payload) if unique_for else None
    fields: _NewTaskFields = (
        type_,
        payload,
        task_id,
        queue,
        max_retry,
        timeout,
        deadline,
        unique or "",
        math.ceil(retention_ or 0),
        headers,
    )
    if process_at is None and unique is None:
        placement = moment.pending_placement
    else:
        unique_ttl = 0
        if unique_for:
            unique_ttl = math.ceil(unique_for + max(0.0, (process_at or now) - now))
        scheduled_at = None if process_at is None else int(process_at)
        placement = redis_ops.enqueue_placement(scheduled_at, time.time_ns(), unique or "", unique_ttl)
    item: redis_ops.EnqueueItem = (task_id, encode_task(*fields), placement)
    scheduled = None if process_at is None else datetime.fromtimestamp(process_at, UTC)
    return _Prepared(item, fields, unique, scheduled)


def _refusal(code: object, prepared: _Prepared) -> QueueError | None:
    """The error for a task the enqueue script did not write (None: written)."""
    if code == 1:
        return None
    task_id = prepared.task_id
    if isinstance(code, Exception):
        return QueueError(f"enqueue of {task_id} failed: {code}")
    if code == 0:
        return TaskIdConflictError(f"task id {task_id!r} already exists in queue {prepared.queue!r}")
    return DuplicateTaskError(f"a task with the same type and payload holds {prepared.unique}")


class QueueClient:
    """Enqueues tasks. Concurrent ``enqueue`` calls are coalesced: whatever arrives while a round trip
    is in flight goes out together in the next one (each caller still gets its own result or error).

    With ``wait_replicas`` > 0 every round trip ends with a WAIT for that many replicas: an enqueue
    is only reported as done once a replica holds it, so a failover cannot lose it; if too few
    confirm within ``wait_timeout_ms`` the caller gets QueueUnavailableError (the task may still run).
    """

    def __init__(self, redis: aioredis.Redis, *, wait_replicas: int = 0, wait_timeout_ms: int = 1000) -> None:
        self._ops = RedisOps(redis)
        self._wait = redis_ops.wait_replicas_call(wait_replicas, wait_timeout_ms) if wait_replicas else None
        self._wait_replicas = wait_replicas
        self._coalescer: Coalescer[EnqueueRequest, TaskInfo] = Coalescer(self.enqueue_many)
        self._id_coalescer: Coalescer[EnqueueRequest, str] = Coalescer(self.enqueue_ids)

    async def enqueue(
        self,
        type: str,
        payload: bytes,
        *,
        queue: str = "default",
        task_id: str | None = None,
        max_retry: int = 25,
        timeout: float | None = None,  # noqa: ASYNC109 - the task's timeout (asynq's option)
        deadline: datetime | None = None,
        process_at: datetime | None = None,
        process_in: float | None = None,
        unique_for: float | None = None,
        retention: float | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> TaskInfo:
        # Positional, in the fields' order: keywords cost twice as much on this hot path.
        request = EnqueueRequest(
            type,
            payload,
            queue,
            task_id,
            max_retry,
            timeout,
            deadline,
            process_at,
            process_in,
            unique_for,
            retention,
            headers,
        )
        return await self.enqueue_request(request)

    async def enqueue_request(self, request: EnqueueRequest) -> TaskInfo:
        """Enqueue one request; concurrent calls share one round trip (``enqueue_many``)."""
        return await self._coalescer.submit(request)

    def _check_replicated(self, confirmed: object) -> None:
        if isinstance(confirmed, Exception) or int(str(confirmed)) < self._wait_replicas:
            raise QueueUnavailableError(
                f"enqueued on the Redis master but confirmed by {confirmed} of {self._wait_replicas} "
                "replicas in time; the task may still run (resubmit with an Idempotency-Key)"
            )

    async def enqueue_many(self, requests: Sequence[EnqueueRequest]) -> list[TaskInfo | QueueError]:
        """Enqueue all in one round trip. Invalid requests come back as errors in their slot;
        QueueUnavailableError is raised when Redis cannot be reached (nothing is known to be written)."""
        moment, outcomes = await self._enqueue_requests(requests)
        return [outcome if isinstance(outcome, QueueError) else outcome.info(moment) for outcome in outcomes]

    async def enqueue_ids(self, requests: Sequence[EnqueueRequest]) -> list[str | QueueError]:
        """``enqueue_many`` answering each task's id instead of its TaskInfo (what an API answers)."""
        _, outcomes = await self._enqueue_requests(requests)
        return [outcome if isinstance(outcome, QueueError) else outcome.task_id for outcome in outcomes]

    async def _enqueue_requests(
        self, requests: Sequence[EnqueueRequest]
    ) -> tuple[_Moment, list[_Prepared | QueueError]]:
        moment = _Moment()
        return moment, await self._enqueue_prepared([_prepared_or_error(req, moment) for req in requests])

    async def enqueue_request_id(self, request: EnqueueRequest) -> str:
        """``enqueue_request`` answering the task's id; concurrent calls share one round trip."""
        return await self._id_coalescer.submit(request)

    def enqueue_request_id_soon(self, request: EnqueueRequest) -> asyncio.Future[str]:
        """``enqueue_request_id`` as a future (for callers that answer from its done-callback)."""
        return self._id_coalescer.submit_soon(request)

    async def _enqueue_prepared(self, prepared: list[_Prepared | QueueError]) -> list[_Prepared | QueueError]:
        """Writes the valid tasks; each slot is then its task, written, or why it was not."""
        valid = [p for p in prepared if isinstance(p, _Prepared)]
        if not valid:
            return prepared
        by_queue: dict[str, list[_Prepared]] = {}
        for p in valid:
            by_queue.setdefault(p.queue, []).append(p)
        chunks = [
            group[start : start + _BATCH_CHUNK]
            for group in by_queue.values()
            for start in range(0, len(group), _BATCH_CHUNK)
        ]
        calls = [redis_ops.enqueue_batch_call(c[0].queue, [p.item for p in c]) for c in chunks]
        # SADD asynq:queues rides along every round trip: remembering registered queues (as asynq's client
        # does) would leave a queue unlisted after Redis lost its data, e.g. a restart without persistence.
        queues = sorted(by_queue)
        wait = [self._wait] if self._wait is not None else []
        replies = await self._ops.run(
            [redis_ops.register_queues_call(queues), *calls, *wait], raise_errors=False
        )
        if isinstance(replies[0], Exception):
            raise QueueError(f"cannot register queues {queues}: {replies[0]}")
        if wait:
            self._check_replicated(replies.pop())
        refused: dict[int, QueueError] = {}
        for chunk, reply in zip(chunks, replies[1:], strict=True):
            for i, p in enumerate(chunk):
                error = _refusal(reply if isinstance(reply, Exception) else reply[i], p)
                if error is not None:
                    refused[id(p)] = error
        if not refused:
            return prepared
        return [refused.get(id(p), p) for p in prepared]


def _prepared_or_error(req: EnqueueRequest, moment: _Moment) -> _Prepared | QueueError:
    try:
        return _prepare(req, moment)
    except QueueError as exc:
        return exc
