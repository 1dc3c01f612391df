"""Read and manage queues and tasks (asynq's Inspector): stats, listing, delete / run / archive, cancel."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import redis.asyncio as aioredis
from redis import exceptions as redis_errors

from sytq import redis_keys as keys
from sytq.queue import redis_ops
from sytq.queue.client import validate_queue_name
from sytq.queue.codec import CorruptTaskError, TaskMessage, as_text, from_unix
from sytq.queue.info import task_info
from sytq.queue.models import (
    QueueError,
    QueueNotFoundError,
    QueueStats,
    ServerInfo,
    TaskInfo,
    TaskNotFoundError,
    TaskState,
    TaskStateError,
    WorkerInfo,
)
from sytq.queue.proto import DecodeError, ServerInfoProto, WorkerInfoProto
from sytq.queue.redis_ops import RedisOps

_STATE_KEY = {
    TaskState.PENDING: keys.pending_key,
    TaskState.ACTIVE: keys.active_key,
    TaskState.SCHEDULED: keys.scheduled_key,
    TaskState.RETRY: keys.retry_key,
    TaskState.ARCHIVED: keys.archived_key,
    TaskState.COMPLETED: keys.completed_key,
}


class Inspector:
    def __init__(self, redis: aioredis.Redis) -> None:
        self._ops = RedisOps(redis)

    async def queues(self) -> list[str]:
        members = await self._ops.run_one(redis_ops.list_queues_call())
        return sorted(as_text(m) for m in members)

    async def queue_stats(self, queue: str) -> QueueStats:
        queue = validate_queue_name(queue)
        now = time.time()
        registered, raw = await self._ops.run(
            [
                redis_ops.queue_registered_call(queue),
                redis_ops.queue_stats_call(queue, time.strftime("%Y-%m-%d", time.gmtime(now))),
            ]
        )
        if not registered:
            raise QueueNotFoundError(f"queue {queue!r} does not exist")
        pending, active, scheduled, retry, archived, completed = (int(v) for v in raw[:6])
        processed_today, failed_today, processed_total, failed_total = (int(v) for v in raw[6:10])
        oldest_ns = int(raw[11])
        latency = max(0.0, now - oldest_ns / 1e9) if oldest_ns else 0.0
        return QueueStats(
            queue=queue,
            size=pending + active + scheduled + retry + archived + completed,
            pending=pending,
            active=active,
            scheduled=scheduled,
            retry=retry,
            archived=archived,
            completed=completed,
            processed_today=processed_today,
            failed_today=failed_today,
            processed_total=processed_total,
            failed_total=failed_total,
            paused=bool(int(raw[10])),
            latency_seconds=latency,
            memory_usage_bytes=int(raw[12]),
        )

    async def get_task(self, queue: str, task_id: str) -> TaskInfo:
        found = (await self.get_tasks([(queue, task_id)]))[0]
        if isinstance(found, QueueError):
            raise found
        return found

    async def get_tasks(self, tasks: Sequence[tuple[str, str]]) -> list[TaskInfo | QueueError]:
        """Several ``(queue, task_id)`` in one round trip. Each answer is in its task's place: the
        ``TaskInfo``, or the ``QueueError`` that ``get_task`` would raise (e.g. not found)."""
        found: list[TaskInfo | QueueError] = []
        calls: list[redis_ops.Call] = []
        asked: list[tuple[int, str, str]] = []  # (place, queue, task id) of what is read
        for queue, task_id in tasks:
            try:
                name = validate_queue_name(queue)
            except QueueError as exc:
                found.append(exc)
                continue
            asked.append((len(found), name, task_id))
            found.append(TaskNotFoundError(task_id))  # replaced below
            calls += [
                redis_ops.task_fields_call(name, task_id),
                redis_ops.zscore_call(keys.scheduled_key(name), task_id),
                redis_ops.zscore_call(keys.retry_key(name), task_id),
            ]
        replies = await self._ops.run(calls)
        for at, (place, queue, task_id) in enumerate(asked):
            fields, sched, retry = replies[3 * at : 3 * at + 3]
            try:
                found[place] = self._info(queue, task_id, fields, sched or retry)
            except QueueError as exc:
                found[place] = exc
        return found

    async def find_task(self, task_id: str, queues: Sequence[str] | None = None) -> TaskInfo:
        names = list(queues) if queues is not None else await self.queues()
        if not names:
            raise TaskNotFoundError(f"task {task_id!r} not found (no queues)")
        found = await self._ops.run(
            [redis_ops.task_fields_call(validate_queue_name(q), task_id) for q in names]
        )
        for queue, fields in zip(names, found, strict=True):
            if fields[0] is not None:
                return await self.get_task(queue, task_id)
        raise TaskNotFoundError(f"task {task_id!r} not found in queues {', '.join(names)}")

    def _info(self, queue: str, task_id: str, fields: list[object], score: object) -> TaskInfo:
        raw_msg, raw_state, result = fields
        if raw_msg is None:
            raise TaskNotFoundError(f"task {task_id!r} not found in queue {queue!r}")
        try:
            msg = TaskMessage.decode(raw_msg if isinstance(raw_msg, bytes) else None)
        except CorruptTaskError as exc:
            raise CorruptTaskError(f"task {task_id!r} in queue {queue!r}: {exc}") from exc
        try:
            state = TaskState(as_text(raw_state))
        except ValueError as exc:
            raise QueueError(f"task {task_id!r} has unknown state {raw_state!r}") from exc
        next_at: datetime | None = None
        if state is TaskState.PENDING:
            next_at = datetime.now(UTC)
        elif state in (TaskState.SCHEDULED, TaskState.RETRY) and score is not None:
            next_at = from_unix(float(score))  # type: ignore[arg-type]
        return task_info(
            msg, state, next_process_at=next_at, result=result if isinstance(result, bytes) else None
        )

    async def list_tasks(
        self, queue: str, state: TaskState, *, page_size: int = 30, page: int = 0
    ) -> list[TaskInfo]:
        queue = validate_queue_name(queue)
        if page_size < 1 or page < 0:
            raise ValueError("page_size must be >= 1 and page >= 0")
        start, stop = page * page_size, page * page_size + page_size - 1
        key = _STATE_KEY[TaskState(state)](queue)
        if state in (TaskState.PENDING, TaskState.ACTIVE):
            ids = [
                as_text(v)
                for v in reversed(await self._ops.run_one(redis_ops.list_range_call(key, start, stop)))
            ]
            scores: list[object] = [None] * len(ids)
        else:
            reply = await self._ops.run_one(redis_ops.zset_range_call(key, start, stop))
            ids = [as_text(member) for member in reply[::2]]  # WITHSCORES through execute_command is flat
            scores = list(reply[1::2])
        if not ids:
            return []
        rows = await self._ops.run([redis_ops.task_fields_call(queue, task_id) for task_id in ids])
        infos: list[TaskInfo] = []
        for task_id, fields, score in zip(ids, rows, scores, strict=True):
            try:
                infos.append(self._info(queue, task_id, fields, score))
            except (TaskNotFoundError, CorruptTaskError):
                continue  # moved or deleted between the two reads, or unreadable: not listable
        return infos

    async def list_archived_between(
        self, queue: str, since: float, until: float, *, limit: int = 500, offset: int = 0
    ) -> list[tuple[TaskInfo, float]]:
        """Archived tasks with the unix time they were archived, oldest first, archived from
        ``since`` (inclusive) until ``until`` (exclusive): consecutive windows read each task once."""
        queue = validate_queue_name(queue)
        reply = await self._ops.run_one(redis_ops.archived_between_call(queue, since, until, offset, limit))
        ids = [as_text(member) for member in reply[::2]]
        if not ids:
            return []
        rows = await self._ops.run([redis_ops.task_fields_call(queue, task_id) for task_id in ids])
        found: list[tuple[TaskInfo, float]] = []
        for task_id, fields, score in zip(ids, rows, reply[1::2], strict=True):
            try:
                found.append((self._info(queue, task_id, fields, score), float(score)))
            except (TaskNotFoundError, CorruptTaskError):
                continue  # moved or deleted between the two reads, or unreadable
        return found

    async def _move(self, queue: str, task_id: str, op: str) -> None:
        queue = validate_queue_name(queue)
        try:
            await self._ops.run_one(
                redis_ops.inspector_move_call(queue, task_id, op, int(time.time()), time.time_ns())
            )
        except redis_errors.ResponseError as exc:
            text = str(exc)
            if text.startswith("NOT_FOUND"):
                raise TaskNotFoundError(f"task {task_id!r} not found in queue {queue!r}") from exc
            if text.startswith("ACTIVE"):
                raise TaskStateError(f"task {task_id!r} is active; cancel it instead") from exc
            if text.startswith("ALREADY"):
                raise TaskStateError(f"task {task_id!r} is already {text.split()[-1]}") from exc
            if text.startswith("COMPLETED"):
                raise TaskStateError(f"task {task_id!r} is completed") from exc
            raise QueueError(f"{op} of task {task_id!r} failed: {text}") from exc

    async def delete_task(self, queue: str, task_id: str) -> None:
        await self._move(queue, task_id, "delete")

    async def run_task(self, queue: str, task_id: str) -> None:
        await self._move(queue, task_id, "run")

    async def archive_task(self, queue: str, task_id: str) -> None:
        await self._move(queue, task_id, "archive")

    async def cancel_task(self, task_id: str) -> None:
        """Best effort, like asynq: every server running the task cancels its handler."""
        await self._ops.run_one(redis_ops.cancel_call(task_id))

    async def pause_queue(self, queue: str) -> None:
        await self._ops.run_one(redis_ops.pause_call(validate_queue_name(queue), int(time.time())))

    async def unpause_queue(self, queue: str) -> None:
        await self._ops.run_one(redis_ops.unpause_call(validate_queue_name(queue)))

    async def servers(self) -> list[ServerInfo]:
        server_keys = [
            as_text(k) for k in await self._ops.run_one(redis_ops.live_servers_call(int(time.time())))
        ]
        if not server_keys:
            return []
        worker_keys = [keys.workers_key_of(k) for k in server_keys]
        rows = await self._ops.run(
            [*(redis_ops.get_call(k) for k in server_keys), *(redis_ops.hgetall_call(k) for k in worker_keys)]
        )
        infos, workers = rows[: len(server_keys)], rows[len(server_keys) :]
        out: list[ServerInfo] = []
        for raw, worker_map in zip(infos, workers, strict=True):
            # None: expired between the two reads, or not a ServerInfo
            proto = _parsed(ServerInfoProto, raw)
            if proto is None:
                continue
            out.append(
                ServerInfo(
                    id=proto.server_id,
                    host=proto.host,
                    pid=proto.pid,
                    concurrency=proto.concurrency,
                    queues=dict(proto.queues),
                    strict_priority=proto.strict_priority,
                    status=proto.status,
                    started=_timestamp(proto, "start_time"),
                    active_workers=proto.active_worker_count,
                    workers=_workers(worker_map or {}),
                )
            )
        return out


def _parsed(proto_type: Any, raw: object) -> Any:
    """The decoded protobuf message, or None for anything that is not one (heartbeats are best effort)."""
    if not isinstance(raw, bytes):
        return None
    try:
        return proto_type.FromString(raw)
    except DecodeError:
        return None


def _timestamp(proto: Any, name: str) -> datetime | None:
    return getattr(proto, name).ToDatetime(UTC) if proto.HasField(name) else None


def _workers(raw: dict[bytes, bytes]) -> list[WorkerInfo]:
    protos = [_parsed(WorkerInfoProto, value) for value in raw.values()]
    return [
        WorkerInfo(
            task_id=proto.task_id,
            task_type=proto.task_type,
            queue=proto.queue,
            started=_timestamp(proto, "start_time"),
            deadline=_timestamp(proto, "deadline"),
        )
        for proto in protos
        if proto is not None
    ]
