"""The worker runtime: fetch tasks in batches, run handlers concurrently, acknowledge in batches.

Loops of one Server:
- fetcher: one dequeue script call moves up to ``fetch_batch`` tasks (never more than free slots)
  from pending to active with a lease, queues taken in weighted-random or strict order;
- outcome flusher: finished tasks are acknowledged (done / complete / retry / archive / requeue)
  in one pipeline per flush, whatever piled up while the previous flush was in flight;
- heartbeat: extends the leases of every held task and writes asynq's server/worker info;
- lease watchdog: a handler whose lease could not be extended in time is cancelled, because
  another server may recover and run the task;
- forwarder (due scheduled/retry -> pending), recoverer (expired leases -> retry/archive),
  janitor (completed tasks past retention), cancel listener (``asynq:cancel``).
A loop that hits a Redis error logs it, waits and tries again; it never dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import signal
import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import redis.asyncio as aioredis
from redis import exceptions as redis_errors

from sytq import redis_keys as keys
from sytq.queue import redis_ops
from sytq.queue.codec import CorruptTaskError, TaskMessage
from sytq.queue.config import ServerConfig
from sytq.queue.models import QueueError, RetryIn, SkipRetry
from sytq.queue.proto import ServerInfoProto, WorkerInfoProto
from sytq.queue.pubsub import subscribe
from sytq.queue.redis_ops import Call, RedisOps
from sytq.queue.retry import default_retry_delay
from sytq.queue.task import Handler, Task
from sytq.queue.task_events import TASK_EVENTS_CHANNEL, task_event

log = logging.getLogger("sytq.queue.server")

LEASE_EXPIRED_ERROR = "asynq: task lease expired"
DEADLINE_ERROR = "context deadline exceeded"
CANCELED_ERROR = "context canceled"
CORRUPT_TASK_TYPE = "sytq:corrupt-message"  # type of an archived task whose stored message was unreadable
_ACK_CHUNK = 1000
_MAX_RETRY_DELAY = 365 * 86400.0  # a retry_delay beyond a year is a bug; keep the zset score sane
_REDIS_ERRORS = (QueueError, redis_errors.RedisError)


def _day(now: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(now))


@dataclass
class _Held:
    """A task this server holds a lease on: running, or finished and waiting for its ack."""

    queue: str
    msg: TaskMessage
    lease_valid_until: float  # monotonic; the handler is cancelled past it
    started: float
    deadline: float  # unix seconds, 0 = none
    runner: asyncio.Task[None] | None = None
    cancel_reason: str | None = None


@dataclass
class _Outcome:
    queue: str
    task_id: str
    kind: str  # done | retry | archive | requeue | drop | forget (lease lost: nothing to write)
    call: Call | None = None  # retry / archive / requeue / drop
    ack_item: redis_ops.AckItem | None = None  # done


class Server:
    def __init__(self, redis: aioredis.Redis, config: ServerConfig, handlers: Mapping[str, Handler]) -> None:
        config.validate()
        self._redis = redis
        self._ops = RedisOps(redis)
        self._writer = redis_ops.CallBatcher(self._ops)
        self._config = config
        self._handlers = dict(handlers)
        self._queues = list(config.queues)
        self._server_id = str(uuid.uuid4())
        self._server_key = keys.server_info_key(config.host, config.pid, self._server_id)
        self._workers_key = keys.workers_key(config.host, config.pid, self._server_id)
        self._held: dict[str, _Held] = {}
        self._outcomes: list[_Outcome] = []
        self._outcome_ready = asyncio.Event()
        self._slot_freed = asyncio.Event()
        self._stop = asyncio.Event()
        self._started = asyncio.Event()
        self._fetching = True
        self._flushing = False  # an acknowledgement round trip is in flight
        self._start_time = time.time()
        self._status = "new"
        self._channel = TASK_EVENTS_CHANNEL if config.publish_events else ""
        tick = min(config.heartbeat_interval, config.lease_seconds / 3)
        self._heartbeat_tick = max(0.05, tick)

    # ---- public -------------------------------------------------------------------------------

    @property
    def server_id(self) -> str:
        return self._server_id

    def request_stop(self) -> None:
        self._stop.set()

    async def wait_started(self) -> None:
        await self._started.wait()

    async def run(self, install_signal_handlers: bool = True) -> None:
        loop = asyncio.get_running_loop()
        installed: list[signal.Signals] = []
        if install_signal_handlers:
            for sig in (signal.SIGTERM, signal.SIGINT):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.add_signal_handler(sig, self.request_stop)
                    installed.append(sig)
        self._status = "active"
        log.info(
            "queue server %s (%s) started: queues=%s strict=%s concurrency=%d",
            self._config.server_name,
            self._server_key,
            dict(self._config.queues),
            self._config.strict_priority,
            self._config.concurrency,
        )
        background = [
            asyncio.create_task(
                self._forever(self._heartbeat_once, self._heartbeat_tick), name="sytq-heartbeat"
            ),
            asyncio.create_task(self._lease_watchdog(), name="sytq-lease-watchdog"),
            asyncio.create_task(
                self._forever(self._forward_once, self._config.forward_interval), name="sytq-forwarder"
            ),
            asyncio.create_task(
                self._forever(self._recover_once, self._config.recover_interval), name="sytq-recoverer"
            ),
            asyncio.create_task(
                self._forever(self._janitor_once, self._config.janitor_interval), name="sytq-janitor"
            ),
            asyncio.create_task(self._cancel_listener(), name="sytq-cancel-listener"),
        ]
        flusher = asyncio.create_task(self._flush_loop(), name="sytq-outcome-flusher")
        fetcher = asyncio.create_task(self._fetch_loop(), name="sytq-fetcher")
        try:
            self._started.set()
            await self._stop.wait()
            await self._shutdown(fetcher, flusher)
        finally:
            for sig in installed:
                loop.remove_signal_handler(sig)
            runners = [h.runner for h in self._held.values() if h.runner is not None]
            for task in (*background, fetcher, flusher, *runners):
                task.cancel()  # runners are left only when run() itself was cancelled: leases expire
            await asyncio.gather(*background, fetcher, flusher, *runners, return_exceptions=True)
            with contextlib.suppress(*_REDIS_ERRORS):
                await self._ops.run(redis_ops.clear_server_state_calls(self._server_key, self._workers_key))
            log.info("queue server %s stopped", self._config.server_name)

    # ---- shutdown -----------------------------------------------------------------------------

    async def _shutdown(self, fetcher: asyncio.Task[None], flusher: asyncio.Task[None]) -> None:
        self._status = "stopped"
        self._fetching = False
        self._slot_freed.set()
        await fetcher  # it finishes its in-flight dequeue, so no fetched task is left unowned
        runners = [h.runner for h in self._held.values() if h.runner is not None]
        if runners:
            _, still_running = await asyncio.wait(runners, timeout=self._config.shutdown_timeout)
            for held in list(self._held.values()):
                if held.runner in still_running and held.runner is not None:
                    held.cancel_reason = held.cancel_reason or "shutdown"
                    held.runner.cancel()
            if still_running:  # a handler that swallows cancellation is left to lease recovery
                await asyncio.wait(still_running, timeout=5.0)
        # Final acknowledgements; the flusher retries while Redis blinks, for at most a few seconds.
        # Whatever cannot be written stays active with a lease and is recovered by another server.
        deadline = time.monotonic() + 5.0
        while (self._outcomes or self._flushing) and time.monotonic() < deadline:
            self._outcome_ready.set()
            await asyncio.sleep(0.02)
        flusher.cancel()

    # ---- fetching -----------------------------------------------------------------------------

    def _queue_order(self) -> list[str]:
        weights = self._config.queues
        if self._config.strict_priority:
            return sorted(self._queues, key=lambda q: -weights[q])
        if len(self._queues) == 1:
            return list(self._queues)
        # Weighted random order, like asynq: a queue comes first with probability weight / total.
        remaining = list(self._queues)
        order: list[str] = []
        while remaining:
            pick = random.choices(remaining, weights=[weights[q] for q in remaining])[0]
            order.append(pick)
            remaining.remove(pick)
        return order

    async def _fetch_loop(self) -> None:
        idle = 0.0
        while self._fetching:
            free = self._config.concurrency - len(self._held)
            if free <= 0:
                self._slot_freed.clear()
                await self._slot_freed.wait()
                continue
            want = min(free, self._config.fetch_batch)
            now = time.time()
            lease_until = time.monotonic() + self._config.lease_seconds
            order = self._queue_order()
            try:
                rows = await self._ops.run_one(
                    redis_ops.dequeue_call(order, want, math.ceil(now + self._config.lease_seconds))
                )
            except _REDIS_ERRORS as exc:
                log.warning("dequeue failed, retrying: %s", exc)
                await self._sleep_unless_stopping(1.0)
                continue
            if not rows:
                idle = min(self._config.idle_poll_max, max(0.005, idle * 2))
                await self._sleep_unless_stopping(idle)
                continue
            idle = 0.0
            await self._start_fetched(order, rows, now, lease_until)

    async def _sleep_unless_stopping(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)

    async def _start_fetched(
        self, order: list[str], rows: list[object], now: float, lease_until: float
    ) -> None:
        events: list[Call] = []
        for i in range(0, len(rows), 3):
            queue = order[int(rows[i])]  # type: ignore[call-overload]
            task_id = _text(rows[i + 1])
            raw = rows[i + 2]
            if not isinstance(raw, bytes):
                log.error("task %s in queue %s has no task hash; dropping its id from active", task_id, queue)
                self._post(_Outcome(queue, task_id, "drop", call=redis_ops.drop_active_call(queue, task_id)))
                continue
            try:
                msg = TaskMessage.decode(raw)
            except CorruptTaskError as exc:
                log.error("task %s in queue %s: %s; archiving it", task_id, queue, exc)
                self._post(
                    _Outcome(queue, task_id, "archive", call=self._quarantine(queue, task_id, raw, exc, now))
                )
                continue
            deadline = _effective_deadline(msg, now)
            held = _Held(queue=queue, msg=msg, lease_valid_until=lease_until, started=now, deadline=deadline)
            self._held[task_id] = held
            held.runner = asyncio.create_task(self._execute(task_id, held), name=f"sytq-task-{task_id}")
            if self._channel:
                events.append(
                    redis_ops.publish_call(
                        self._channel, task_event(task_id, queue, msg.type, "active", msg.retried)
                    )
                )
        if events:
            with contextlib.suppress(*_REDIS_ERRORS):
                await self._ops.run(events)

    # ---- running a task -------------------------------------------------------------------------

    async def _execute(self, task_id: str, held: _Held) -> None:
        msg = held.msg
        task = self._task_for(held.queue, task_id, msg, held.deadline)
        error: BaseException | None = None
        # A plain timer rather than asyncio.timeout(): half the cost, and this runs once per task.
        timer = (
            asyncio.get_running_loop().call_later(
                held.deadline - time.time(), self._cancel_running, task_id, "deadline"
            )
            if held.deadline
            else None
        )
        try:
            handler = self._handlers.get(msg.type)
            if handler is None:
                raise LookupError(f'handler not found for task "{msg.type}"')
            await handler(task)
        except asyncio.CancelledError:
            reason = held.cancel_reason
            if reason == "lease":
                self._post(_Outcome(held.queue, task_id, "forget"))
                return
            if reason == "deadline":
                error = TimeoutError(DEADLINE_ERROR)
            elif reason == "cancel":
                error = (
                    SkipRetry(CANCELED_ERROR)
                    if self._config.cancelled_tasks_archive
                    else RuntimeError(CANCELED_ERROR)
                )
            else:  # shutdown (or the server itself cancelled): hand the task back
                self._post(
                    _Outcome(
                        held.queue,
                        task_id,
                        "requeue",
                        call=redis_ops.requeue_call(held.queue, task_id, time.time_ns()),
                    )
                )
                return
        except Exception as exc:
            error = exc
        finally:
            if timer is not None:
                timer.cancel()
        try:
            outcome = self._outcome_for(task_id, held, task, error)
        except Exception:  # never leave a slot held by a dead runner; the lease runs out instead
            log.exception("cannot build the outcome of task %s; leaving it to lease recovery", task_id)
            outcome = _Outcome(held.queue, task_id, "forget")
        self._post(outcome)

    def _outcome_for(self, task_id: str, held: _Held, task: Task, error: BaseException | None) -> _Outcome:
        msg, queue, now = held.msg, held.queue, time.time()
        if error is None:
            if msg.retention > 0:
                done = msg.replace(completed_at=int(now)).encode()
                expire = int(now) + msg.retention
                event = self._event(task_id, queue, msg.type, "completed", msg.retried, None)
            else:
                done, expire = b"", 0
                event = self._event(task_id, queue, msg.type, "succeeded", msg.retried, None)
            result = task.attached_result or b""
            ack = (task_id, msg.unique_key, done, expire, event, result)
            return _Outcome(queue, task_id, "done", ack_item=ack)
        kind, call = self._failure_call(queue, task_id, msg, error, task, now)
        return _Outcome(queue, task_id, kind, call=call)

    def _failure_call(
        self, queue: str, task_id: str, msg: TaskMessage, error: BaseException, task: Task, now: float
    ) -> tuple[str, Call]:
        """Archive (SkipRetry, or out of retries) or schedule a retry, as asynq does."""
        text = _error_text(error)
        if isinstance(error, SkipRetry) or msg.retried >= msg.retry:
            archived = msg.replace(error_msg=text, last_failed_at=int(now)).encode()
            return "archive", self._archive_call(queue, task_id, archived, msg.type, msg.retried, text, now)
        delay = self._retry_delay(msg, error, task)
        retried = msg.replace(retried=msg.retried + 1, error_msg=text, last_failed_at=int(now))
        return "retry", redis_ops.retry_call(
            queue,
            task_id,
            retried.encode(),
            math.ceil(now + delay),
            day=_day(now),
            is_failure=True,
            channel=self._channel,
            event=self._event(task_id, queue, msg.type, "retry", retried.retried, text),
        )

    def _archive_call(
        self, queue: str, task_id: str, raw: bytes, task_type: str, retried: int, text: str, now: float
    ) -> Call:
        event = self._event(task_id, queue, task_type, "archived", retried, text)
        return redis_ops.archive_call(
            queue, task_id, raw, int(now), day=_day(now), channel=self._channel, event=event
        )

    def _quarantine(self, queue: str, task_id: str, raw: bytes, error: Exception, now: float) -> Call:
        """Archive an undecodable task under a valid message (so asynq tools can still list the
        queue) that keeps the original bytes as its payload."""
        text = f"corrupt task message: {error}"
        msg = TaskMessage(
            type=CORRUPT_TASK_TYPE,
            payload=raw,
            id=task_id,
            queue=queue,
            retry=0,
            error_msg=text,
            last_failed_at=int(now),
        )
        return self._archive_call(queue, task_id, msg.encode(), CORRUPT_TASK_TYPE, 0, text, now)

    def _task_for(self, queue: str, task_id: str, msg: TaskMessage, deadline: float) -> Task:
        return Task(
            self._writer,
            id=msg.id or task_id,
            type=msg.type,
            payload=msg.payload,
            queue=queue,
            retried=msg.retried,
            max_retry=msg.retry,
            headers=dict(msg.headers),
            deadline=datetime.fromtimestamp(deadline, UTC) if deadline else None,
        )

    def _retry_delay(self, msg: TaskMessage, error: BaseException, task: Task) -> float:
        if isinstance(error, RetryIn):
            return min(error.delay, _MAX_RETRY_DELAY) if math.isfinite(error.delay) else _MAX_RETRY_DELAY
        try:
            delay = float(self._config.retry_delay(msg.retried, error, task))
        except Exception:
            log.exception("retry_delay function failed; using asynq's default")
            delay = default_retry_delay(msg.retried, error, task)
        if not math.isfinite(delay) or delay < 0:
            return default_retry_delay(msg.retried, error, task)
        return min(delay, _MAX_RETRY_DELAY)

    def _event(
        self, task_id: str, queue: str, task_type: str, state: str, retried: int, error: str | None
    ) -> str:
        if not self._channel:
            return ""
        return task_event(task_id, queue, task_type, state, retried, error)

    # ---- acknowledging --------------------------------------------------------------------------

    def _post(self, outcome: _Outcome) -> None:
        held = self._held.get(outcome.task_id)
        if held is not None:
            held.runner = None
        if outcome.kind == "forget":
            self._release([outcome.task_id])
            return
        self._outcomes.append(outcome)
        self._outcome_ready.set()

    async def _flush_loop(self) -> None:
        while True:
            await self._outcome_ready.wait()
            self._outcome_ready.clear()
            batch, self._outcomes = self._outcomes, []
            if not batch:
                continue
            self._flushing = True
            try:
                await self._flush(batch)
            except _REDIS_ERRORS as exc:
                log.warning("acknowledging %d tasks failed, retrying: %s", len(batch), exc)
                self._outcomes[:0] = batch
                self._flushing = False
                await asyncio.sleep(0.5)
                self._outcome_ready.set()
                continue
            self._flushing = False
            self._release([o.task_id for o in batch])

    async def _flush(self, batch: list[_Outcome]) -> None:
        now = time.time()
        acks: dict[str, list[redis_ops.AckItem]] = defaultdict(list)
        calls: list[Call] = []
        for outcome in batch:
            if outcome.ack_item is not None:
                acks[outcome.queue].append(outcome.ack_item)
            elif outcome.call is not None:
                calls.append(outcome.call)
        for queue, items in acks.items():
            for start in range(0, len(items), _ACK_CHUNK):
                calls.append(
                    redis_ops.ack_batch_call(
                        queue, _day(now), self._channel, items[start : start + _ACK_CHUNK]
                    )
                )
        # Unavailability raises (the batch is retried). A call Redis rejects would fail the same way
        # forever: it is logged and dropped; its tasks keep their leases until recovery retries them.
        for call, reply in zip(calls, await self._ops.run(calls, raise_errors=False), strict=True):
            if isinstance(reply, Exception):
                log.error("Redis rejected %s: %s", call.script.name if call.script else call.args[0], reply)

    def _release(self, task_ids: list[str]) -> None:
        for task_id in task_ids:
            held = self._held.get(task_id)
            if held is not None and held.runner is None:
                del self._held[task_id]
        self._slot_freed.set()

    # ---- leases and heartbeat ---------------------------------------------------------------------

    async def _heartbeat_once(self) -> None:
        now = time.time()
        lease_until = time.monotonic() + self._config.lease_seconds
        by_queue: dict[str, list[str]] = defaultdict(list)
        # A lease that already ran out is not extended (as asynq): another server may own the task now.
        mono = time.monotonic()
        held_now = [(tid, h) for tid, h in self._held.items() if h.lease_valid_until > mono]
        for task_id, held in held_now:
            by_queue[held.queue].append(task_id)
        calls = [
            redis_ops.extend_leases_call(q, ids, math.ceil(now + self._config.lease_seconds))
            for q, ids in by_queue.items()
        ]
        ttl = max(2, math.ceil(self._heartbeat_tick * 2))
        calls += redis_ops.write_server_state_calls(
            self._server_key,
            self._workers_key,
            ttl,
            math.ceil(now + ttl),
            self._server_info(),
            self._worker_infos(),
        )
        await self._ops.run(calls)
        for _, held in held_now:
            held.lease_valid_until = max(held.lease_valid_until, lease_until)

    def _server_info(self) -> bytes:
        info = ServerInfoProto(
            host=self._config.host,
            pid=self._config.pid,
            server_id=self._server_id,
            concurrency=self._config.concurrency,
            queues=dict(self._config.queues),
            strict_priority=self._config.strict_priority,
            status=self._status,
            active_worker_count=sum(1 for h in self._held.values() if h.runner),
        )
        info.start_time.FromNanoseconds(int(self._start_time * 1e9))
        data: bytes = info.SerializeToString()
        return data

    def _worker_infos(self) -> list[tuple[str, bytes]]:
        out: list[tuple[str, bytes]] = []
        for task_id, held in self._held.items():
            if held.runner is None:
                continue
            info = WorkerInfoProto(
                host=self._config.host,
                pid=self._config.pid,
                server_id=self._server_id,
                task_id=task_id,
                task_type=held.msg.type,
                task_payload=held.msg.payload,
                queue=held.queue,
            )
            info.start_time.FromNanoseconds(int(held.started * 1e9))
            if held.deadline:
                info.deadline.FromSeconds(int(held.deadline))
            out.append((task_id, info.SerializeToString()))
        return out

    async def _lease_watchdog(self) -> None:
        interval = max(0.05, min(1.0, self._config.lease_seconds / 10))
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            for task_id, held in list(self._held.items()):
                if held.runner is not None and held.cancel_reason is None and held.lease_valid_until <= now:
                    log.warning(
                        "lease of task %s ran out (Redis unreachable?); cancelling its handler", task_id
                    )
                    self._cancel_running(task_id, "lease")

    # ---- maintenance loops -------------------------------------------------------------------------

    async def _forever(self, step: Callable[[], Awaitable[None]], interval: float) -> None:
        while True:
            try:
                await step()
            except _REDIS_ERRORS as exc:
                log.warning("%s failed: %s", getattr(step, "__name__", step), exc)
            except Exception:
                log.exception("%s failed unexpectedly", getattr(step, "__name__", step))
            await asyncio.sleep(interval)

    async def _forward_once(self) -> None:
        now = time.time()
        calls: list[Call] = []
        for queue in self._queues:
            calls += redis_ops.forward_calls(queue, int(now), time.time_ns())
        await self._ops.run(calls)

    async def _recover_once(self) -> None:
        now = time.time()
        cutoff = int(now - self._config.lease_grace)
        found = await self._ops.run([redis_ops.list_lease_expired_call(q, cutoff) for q in self._queues])
        calls: list[Call] = []
        for queue, rows in zip(self._queues, found, strict=True):
            for i in range(0, len(rows), 2):
                task_id, raw = _text(rows[i]), rows[i + 1]
                if task_id in self._held:
                    continue  # ours; the watchdog cancels it if the lease really ran out
                calls.append(self._recovery_call(queue, task_id, raw, now))
        if calls:
            log.info("recovering %d tasks whose lease expired", len(calls))
            await self._ops.run(calls, raise_errors=False)

    def _recovery_call(self, queue: str, task_id: str, raw: object, now: float) -> Call:
        if not isinstance(raw, bytes):
            return redis_ops.drop_active_call(queue, task_id)
        try:
            msg = TaskMessage.decode(raw)
        except CorruptTaskError as exc:
            return self._quarantine(queue, task_id, raw, exc, now)
        task = self._task_for(queue, task_id, msg, 0)
        return self._failure_call(queue, task_id, msg, RuntimeError(LEASE_EXPIRED_ERROR), task, now)[1]

    async def _janitor_once(self) -> None:
        now = int(time.time())
        await self._ops.run([redis_ops.delete_expired_completed_call(q, now) for q in self._queues])

    async def _cancel_listener(self) -> None:
        await subscribe(
            self._redis, keys.CANCEL_CHANNEL, lambda data: self._cancel_running(_text(data), "cancel")
        )

    def _cancel_running(self, task_id: str, reason: str) -> None:
        """Cancel a running handler once; ``reason`` (cancel | deadline | lease | shutdown) decides
        what happens to its task."""
        held = self._held.get(task_id)
        if held is not None and held.runner is not None and held.cancel_reason is None:
            held.cancel_reason = reason
            held.runner.cancel()


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _error_text(error: BaseException) -> str:
    text = str(error) if not isinstance(error, RetryIn) else error.message
    return text or type(error).__name__


def _effective_deadline(msg: TaskMessage, now: float) -> float:
    """Earlier of now + timeout and the absolute deadline (unix s); 0 when neither is set."""
    candidates = [float(d) for d in (msg.deadline,) if d] + ([now + msg.timeout] if msg.timeout > 0 else [])
    return min(candidates) if candidates else 0.0
