"""The one Redis access layer of the queue: every command and script call lives here.

Scripts run with EVALSHA; when Redis answers NOSCRIPT (first use, or after a restart) they are
loaded and only the calls that did not run are sent again, which is safe because a NOSCRIPT
call changed nothing. On a Redis Cluster every script call touches the keys of one queue (one hash
slot) and redis-py's cluster pipeline sends each call to the master of its slot.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import hiredis
import redis.asyncio as aioredis
from redis import exceptions as redis_errors

from sytq import redis_keys as keys
from sytq.coalesce import Coalescer
from sytq.queue import scripts
from sytq.queue.models import QueueUnavailableError
from sytq.redis_connect import is_cluster

STATS_TTL_SECONDS = 90 * 24 * 3600  # asynq keeps daily counters for 90 days
ARCHIVE_MAX_SIZE = 10_000  # asynq's archive caps
ARCHIVE_MAX_AGE_SECONDS = 90 * 24 * 3600

_UNAVAILABLE = (
    redis_errors.ConnectionError,
    redis_errors.TimeoutError,
    redis_errors.BusyLoadingError,
    OSError,
    # A Cluster while a master fails over: slots uncovered, or no node answers at all.
    redis_errors.ClusterDownError,
    redis_errors.TryAgainError,
    redis_errors.SlotNotCoveredError,
    redis_errors.ClusterError,
)


def _is_transient(value: object) -> bool:
    """Replies that say "not now" (failover, loading, out of memory) rather than "this call is wrong"."""
    if isinstance(value, _TRANSIENT_REPLIES):
        return True
    text = str(value) if isinstance(value, redis_errors.ResponseError) else ""
    return text.startswith("MASTERDOWN") or "command not allowed when used memory" in text


_TRANSIENT_REPLIES = (
    # A cluster pipeline hands back a lost node's connection error in that node's calls' places.
    redis_errors.ConnectionError,
    redis_errors.TimeoutError,
    redis_errors.ReadOnlyError,
    redis_errors.BusyLoadingError,
    redis_errors.OutOfMemoryError,
    redis_errors.MasterDownError,
    redis_errors.ClusterDownError,
    redis_errors.TryAgainError,
)


@dataclass(frozen=True)
class Script:
    """A Lua script with a Redis 7 shebang. With it, Redis refuses a writing script as a whole when it
    is out of memory, instead of failing at the first denied command after earlier writes applied."""

    name: str
    body: str = field(repr=False)
    writes: bool = True

    @property
    def source(self) -> str:
        return ("#!lua\n" if self.writes else "#!lua flags=no-writes\n") + self.body

    @property
    def sha(self) -> str:
        return hashlib.sha1(self.source.encode()).hexdigest()


ENQUEUE_BATCH = Script("enqueue_batch", scripts.ENQUEUE_BATCH)
DEQUEUE_BATCH = Script("dequeue_batch", scripts.DEQUEUE_BATCH)
ACK_BATCH = Script("ack_batch", scripts.ACK_BATCH)
RETRY = Script("retry", scripts.RETRY)
ARCHIVE = Script("archive", scripts.ARCHIVE)
REQUEUE = Script("requeue", scripts.REQUEUE)
FORWARD = Script("forward", scripts.FORWARD)
LIST_LEASE_EXPIRED = Script("list_lease_expired", scripts.LIST_LEASE_EXPIRED, writes=False)
DROP_ACTIVE = Script("drop_active", scripts.DROP_ACTIVE)
DELETE_EXPIRED_COMPLETED = Script("delete_expired_completed", scripts.DELETE_EXPIRED_COMPLETED)
INSPECTOR_MOVE = Script("inspector_move", scripts.INSPECTOR_MOVE)
WRITE_SERVER_STATE = Script("write_server_state", scripts.WRITE_SERVER_STATE)
QUEUE_STATS = Script("queue_stats", scripts.QUEUE_STATS, writes=False)
_ALL_SCRIPTS = (
    QUEUE_STATS,
    ENQUEUE_BATCH,
    DEQUEUE_BATCH,
    ACK_BATCH,
    RETRY,
    ARCHIVE,
    REQUEUE,
    FORWARD,
    LIST_LEASE_EXPIRED,
    DROP_ACTIVE,
    DELETE_EXPIRED_COMPLETED,
    INSPECTOR_MOVE,
    WRITE_SERVER_STATE,
)


@dataclass(frozen=True)
class WorkersChange:
    """What a heartbeat changes in its workers hash (or, with ``replace``, writes anew)."""

    replace: bool
    count: int  # workers the hash holds afterwards
    written: Sequence[tuple[str, bytes]]  # worker id (the task id), WorkerInfo
    removed: Sequence[str]


@dataclass(frozen=True)
class Call:
    """One command for a pipeline: a script call or a plain command."""

    args: tuple[Any, ...]
    script: Script | None = None


def script_call(script: Script, keys_: Sequence[str], args: Sequence[Any]) -> Call:
    return Call(("EVALSHA", script.sha, len(keys_), *keys_, *args), script)


def command(*args: Any) -> Call:
    return Call(tuple(args))


def is_closed_transport_error(exc: BaseException) -> bool:
    """uvloop raises RuntimeError ("unable to perform operation on <TCPTransport closed=True ...>;
    the handler is closed") when Redis drops a connection mid-handshake; redis-py passes it through."""
    text = str(exc)
    return isinstance(exc, RuntimeError) and "Transport" in text and "closed" in text


@contextlib.asynccontextmanager
async def unavailable_as_queue_error() -> AsyncIterator[None]:
    try:
        yield
    except _UNAVAILABLE as exc:
        raise QueueUnavailableError(f"Redis is unavailable: {exc}") from exc
    except RuntimeError as exc:
        if is_closed_transport_error(exc):
            raise QueueUnavailableError(f"Redis is unavailable: {exc}") from exc
        raise
    except redis_errors.RedisClusterException as exc:
        # No node of the cluster answers (the same class also reports calls spanning slots: a bug).
        if str(exc).startswith("Redis Cluster cannot be connected"):
            raise QueueUnavailableError(f"Redis is unavailable: {exc}") from exc
        raise


def _connection_kwargs(client: aioredis.Redis) -> dict[str, Any]:
    if is_cluster(client):
        return dict(client.connection_kwargs)  # type: ignore[attr-defined]
    return dict(client.connection_pool.connection_kwargs)


def check_client(client: aioredis.Redis) -> None:
    if _connection_kwargs(client).get("decode_responses"):
        raise ValueError(
            "the queue needs a Redis client with decode_responses=False (task messages are bytes)"
        )


class RedisOps:
    """Runs calls against Redis: one round trip per ``run`` (a pipeline without MULTI)."""

    def __init__(self, client: aioredis.Redis) -> None:
        check_client(client)
        self.client = client
        self.cluster = is_cluster(client)
        # The packed path speaks RESP2 on pooled connections to one server; anything else (a Cluster
        # included, whose calls go to the master of their slot) takes redis-py's own path.
        protocol = _connection_kwargs(client).get("protocol")
        self._packed_ok = (
            protocol in (None, 2, "2") and not self.cluster and not client.single_connection_client
        )

    async def load_scripts(self) -> None:
        if self.cluster:  # SCRIPT LOAD goes to every master
            for script in _ALL_SCRIPTS:
                await self.client.script_load(script.source)
            return
        pipe = self.client.pipeline(transaction=False)
        for script in _ALL_SCRIPTS:
            pipe.execute_command("SCRIPT", "LOAD", script.source)
        await pipe.execute()

    async def run(self, calls: Sequence[Call], *, raise_errors: bool = True) -> list[Any]:
        """Send ``calls`` in one round trip; per-call errors come back as exception values
        when ``raise_errors`` is false."""
        if not calls:
            return []
        async with unavailable_as_queue_error():
            results = await self._send(calls)
            missing = [i for i, r in enumerate(results) if isinstance(r, redis_errors.NoScriptError)]
            if missing:
                await self.load_scripts()
                retried = await self._send([calls[i] for i in missing])
                for i, value in zip(missing, retried, strict=True):
                    results[i] = value
        for value in results:
            if _is_transient(value):  # the whole round trip is worth repeating later
                raise QueueUnavailableError(f"Redis cannot take writes now: {value}") from value
        if raise_errors:
            for value in results:
                if isinstance(value, Exception):
                    raise value
        return results

    async def run_one(self, call: Call) -> Any:
        return (await self.run([call]))[0]

    async def dequeue(self, queues: Sequence[str], max_tasks: int, lease_expiry: int) -> list[Any]:
        """Up to ``max_tasks`` tasks from ``queues`` in their order: queue index, id, msg, ...

        One script call over all queues on a single server. On a Cluster the queues live in different
        slots, so (as asynq does) each queue gets its own call, in order, until enough were taken."""
        if not self.cluster:
            return list(await self.run_one(dequeue_call(queues, max_tasks, lease_expiry)))
        rows: list[Any] = []
        for index, queue in enumerate(queues):
            got = await self.run_one(dequeue_call([queue], max_tasks - len(rows) // 3, lease_expiry))
            for i in range(0, len(got), 3):
                rows += [index, got[i + 1], got[i + 2]]
            if len(rows) // 3 >= max_tasks:
                break
        return rows

    async def _send(self, calls: Sequence[Call]) -> list[Any]:
        if self._packed_ok and all(c.script is not None or c.args[0] in _INT_REPLY_COMMANDS for c in calls):
            return await self._send_scripts(calls)
        if len(calls) == 1:
            try:
                return [await self.client.execute_command(*calls[0].args)]  # type: ignore[no-untyped-call]
            except redis_errors.ResponseError as exc:
                return [exc]
        pipe = self.client.pipeline(transaction=False)
        for call in calls:
            pipe.execute_command(*call.args)
        return list(await pipe.execute(raise_on_error=False))

    async def _send_scripts(self, calls: Sequence[Call]) -> list[Any]:
        """The hot path (batch enqueue, dequeue, acks, heartbeats): packed by hiredis' C packer, as
        redis-py's Python packer costs about a microsecond per argument. Only script calls and
        integer-reply commands come here, whose raw replies equal what redis-py would return."""
        pool = self.client.connection_pool
        try:
            connection = await pool.get_connection()
        except TypeError:  # redis-py < 5.3 wants a command name
            connection = await pool.get_connection("EVALSHA")  # type: ignore[call-arg,unused-ignore]
        try:
            await connection.send_packed_command(b"".join([hiredis.pack_command(c.args) for c in calls]))
            replies: list[Any] = []
            for _ in calls:
                try:
                    replies.append(await connection.read_response())
                except redis_errors.ResponseError as exc:
                    replies.append(exc)
            return replies
        except BaseException:
            await connection.disconnect()  # a half-read reply stream must never be reused
            raise
        finally:
            await pool.release(connection)


_INT_REPLY_COMMANDS = frozenset({"SADD", "PUBLISH", "ZADD", "HSET", "DEL", "ZREM", "WAIT"})


# ---- builders for the queue's calls (keys computed here, so callers never spell a key) ----------


EnqueueItem = tuple[str, bytes, str]
"""id, msg, placement: "p<pending_since_ns>" | "s<process_at_s>", then "|<ttl>|<unique key>" when unique.
Three arguments per task instead of six: packing arguments is most of the client's cost per task."""


def enqueue_placement(process_at: int | None, pending_since_ns: int, unique_key: str, unique_ttl: int) -> str:
    where = f"p{pending_since_ns}" if process_at is None else f"s{process_at}"
    return f"{where}|{unique_ttl}|{unique_key}" if unique_key else where


def enqueue_batch_call(queue: str, items: Sequence[EnqueueItem]) -> Call:
    args: list[Any] = [keys.task_key_prefix(queue)]
    for item in items:
        args.extend(item)
    return script_call(ENQUEUE_BATCH, [keys.pending_key(queue), keys.scheduled_key(queue)], args)


def register_queues_call(queues: Sequence[str]) -> Call:
    return command("SADD", keys.ALL_QUEUES, *queues)


def wait_replicas_call(replicas: int, timeout_ms: int) -> Call:
    """WAIT: blocks until the writes sent before it on this connection reached ``replicas``."""
    return command("WAIT", replicas, timeout_ms)


def dequeue_call(queues: Sequence[str], max_tasks: int, lease_expiry: int) -> Call:
    call_keys: list[str] = []
    for q in queues:
        call_keys += [keys.pending_key(q), keys.paused_key(q), keys.active_key(q), keys.lease_key(q)]
    return script_call(
        DEQUEUE_BATCH, call_keys, [max_tasks, lease_expiry, *(keys.task_key_prefix(q) for q in queues)]
    )


AckItem = tuple[str, str, bytes, int, str, bytes]


def ack_batch_call(queue: str, day: str, channel: str, items: Sequence[AckItem]) -> Call:
    """items: (id, unique key, completed msg or b"", completed expiry, event json or "", result or b"")."""
    args: list[Any] = [STATS_TTL_SECONDS, keys.task_key_prefix(queue), channel]
    for item in items:
        args.extend(item)
    return script_call(
        ACK_BATCH,
        _from_active(
            queue, keys.completed_key(queue), keys.processed_key(queue, day), keys.processed_total_key(queue)
        ),
        args,
    )


def _from_active(queue: str, *more: str) -> list[str]:
    """KEYS of a script that moves tasks out of ``active``: active, lease, then its own."""
    return [keys.active_key(queue), keys.lease_key(queue), *more]


def _counter_keys(queue: str, day: str) -> list[str]:
    return [
        keys.processed_key(queue, day),
        keys.processed_total_key(queue),
        keys.failed_key(queue, day),
        keys.failed_total_key(queue),
    ]


def retry_call(
    queue: str,
    task_id: str,
    msg: bytes,
    retry_at: int,
    *,
    day: str,
    is_failure: bool,
    channel: str,
    event: str,
) -> Call:
    return script_call(
        RETRY,
        _from_active(queue, keys.retry_key(queue), keys.task_key(queue, task_id), *_counter_keys(queue, day)),
        [task_id, msg, retry_at, STATS_TTL_SECONDS, "1" if is_failure else "0", channel, event],
    )


def archive_call(
    queue: str, task_id: str, msg: bytes, now: int, *, day: str, channel: str, event: str
) -> Call:
    return script_call(
        ARCHIVE,
        _from_active(
            queue, keys.archived_key(queue), keys.task_key(queue, task_id), *_counter_keys(queue, day)
        ),
        [
            task_id,
            msg,
            now,
            now - ARCHIVE_MAX_AGE_SECONDS,
            ARCHIVE_MAX_SIZE,
            STATS_TTL_SECONDS,
            keys.task_key_prefix(queue),
            channel,
            event,
        ],
    )


def requeue_call(queue: str, task_id: str, now_ns: int) -> Call:
    return script_call(
        REQUEUE,
        _from_active(queue, keys.pending_key(queue), keys.task_key(queue, task_id)),
        [task_id, now_ns],
    )


def forward_calls(queue: str, now: int, now_ns: int, limit: int = 1000) -> list[Call]:
    prefix = keys.task_key_prefix(queue)
    return [
        script_call(FORWARD, [zset, keys.pending_key(queue)], [now, prefix, now_ns, limit])
        for zset in (keys.scheduled_key(queue), keys.retry_key(queue))
    ]


def list_lease_expired_call(queue: str, cutoff: int, limit: int = 500) -> Call:
    return script_call(
        LIST_LEASE_EXPIRED, [keys.lease_key(queue)], [cutoff, keys.task_key_prefix(queue), limit]
    )


def drop_active_call(queue: str, task_id: str) -> Call:
    return script_call(DROP_ACTIVE, _from_active(queue), [task_id])


def delete_expired_completed_call(queue: str, now: int, limit: int = 500) -> Call:
    return script_call(
        DELETE_EXPIRED_COMPLETED, [keys.completed_key(queue)], [now, keys.task_key_prefix(queue), limit]
    )


def extend_leases_call(queue: str, task_ids: Sequence[str], lease_expiry: int) -> Call:
    members: list[Any] = []
    for task_id in task_ids:
        members += [lease_expiry, task_id]
    return command("ZADD", keys.lease_key(queue), "XX", *members)


def inspector_move_call(queue: str, task_id: str, op: str, now: int, now_ns: int) -> Call:
    return script_call(
        INSPECTOR_MOVE,
        [
            keys.task_key(queue, task_id),
            keys.pending_key(queue),
            keys.scheduled_key(queue),
            keys.retry_key(queue),
            keys.archived_key(queue),
            keys.completed_key(queue),
        ],
        [
            task_id,
            op,
            now,
            now_ns,
            now - ARCHIVE_MAX_AGE_SECONDS,
            ARCHIVE_MAX_SIZE,
            keys.task_key_prefix(queue),
        ],
    )


def write_server_state_calls(
    server_key: str,
    workers_key: str,
    ttl: int,
    expires_at: int,
    server_info: bytes,
    workers: WorkersChange,
) -> list[Call]:
    """The first call answers 0 when the workers hash was not as expected (see WRITE_SERVER_STATE)."""
    args: list[Any] = [ttl, server_info, int(workers.replace), workers.count, len(workers.written)]
    for worker_id, info in workers.written:
        args += [worker_id, info]
    args += workers.removed
    return [
        script_call(WRITE_SERVER_STATE, [server_key, workers_key], args),
        command("ZADD", keys.ALL_SERVERS, expires_at, server_key),
        command("ZADD", keys.ALL_WORKERS, expires_at, workers_key),
    ]


def clear_server_state_calls(server_key: str, workers_key: str) -> list[Call]:
    return [
        command("ZREM", keys.ALL_SERVERS, server_key),
        command("ZREM", keys.ALL_WORKERS, workers_key),
        command("DEL", server_key, workers_key),
    ]


def cancel_call(task_id: str) -> Call:
    return command("PUBLISH", keys.CANCEL_CHANNEL, task_id)


def write_result_call(queue: str, task_id: str, data: bytes) -> Call:
    return command("HSET", keys.task_key(queue, task_id), "result", data)


def pause_call(queue: str, now: int) -> Call:
    return command("SET", keys.paused_key(queue), now, "NX")


def unpause_call(queue: str) -> Call:
    return command("DEL", keys.paused_key(queue))


def publish_call(channel: str, message: str) -> Call:
    return command("PUBLISH", channel, message)


# ---- reads (Inspector) ------------------------------------------------------------------------------


def list_queues_call() -> Call:
    return command("SMEMBERS", keys.ALL_QUEUES)


def queue_registered_call(queue: str) -> Call:
    return command("SISMEMBER", keys.ALL_QUEUES, queue)


def queue_stats_call(queue: str, day: str) -> Call:
    return script_call(
        QUEUE_STATS,
        [
            keys.pending_key(queue),
            keys.active_key(queue),
            keys.scheduled_key(queue),
            keys.retry_key(queue),
            keys.archived_key(queue),
            keys.completed_key(queue),
            keys.processed_key(queue, day),
            keys.failed_key(queue, day),
            keys.processed_total_key(queue),
            keys.failed_total_key(queue),
            keys.paused_key(queue),
        ],
        [keys.task_key_prefix(queue)],
    )


def task_fields_call(queue: str, task_id: str) -> Call:
    """HMGET msg, state, result."""
    return command("HMGET", keys.task_key(queue, task_id), "msg", "state", "result")


def zscore_call(zset_key: str, task_id: str) -> Call:
    return command("ZSCORE", zset_key, task_id)


def list_range_call(list_key: str, start: int, stop: int) -> Call:
    """Elements counted from the dequeue end (the list's tail): index 0 is the next to run."""
    return command("LRANGE", list_key, -(stop + 1), -(start + 1))


def zset_range_call(zset_key: str, start: int, stop: int) -> Call:
    return command("ZRANGE", zset_key, start, stop, "WITHSCORES")


def archived_between_call(queue: str, since: float, until: float, offset: int, limit: int) -> Call:
    """Archived ids with their archive time (unix s) in [since, until), oldest first."""
    return command(
        "ZRANGEBYSCORE", keys.archived_key(queue), since, f"({until}", "WITHSCORES", "LIMIT", offset, limit
    )


def live_servers_call(now: int) -> Call:
    return command("ZRANGEBYSCORE", keys.ALL_SERVERS, now, "+inf")


def get_call(key: str) -> Call:
    return command("GET", key)


def hgetall_call(key: str) -> Call:
    return command("HGETALL", key)


class CallBatcher:
    """Coalesces calls from many concurrent coroutines into one pipeline per round trip.

    Thousands of handlers writing results at once then share one connection instead of each
    taking one from the pool (a bounded pool would refuse them)."""

    def __init__(self, ops: RedisOps) -> None:
        self._ops = ops
        self._coalescer: Coalescer[Call, Any] = Coalescer(self._run_all)

    async def call(self, call: Call) -> Any:
        """The call's reply; an error reply is raised."""
        return await self._coalescer.submit(call)

    async def _run_all(self, calls: list[Call]) -> list[Any]:
        return await self._ops.run(calls, raise_errors=False)
