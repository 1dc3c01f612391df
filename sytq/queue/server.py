"""The worker runtime: one Server composes the loops that fetch, run, acknowledge and look after tasks.

Loops of one Server, a module each:
- processor: one dequeue script call moves up to ``fetch_batch`` tasks (never more than free slots)
  from pending to active with a lease, queues taken in weighted-random or strict order; handlers
  run concurrently;
- acknowledger: finished tasks are acknowledged (done / complete / retry / archive / requeue)
  in one pipeline per flush;
- heartbeat: extends the leases of every held task and writes asynq's server/worker info;
- lease watchdog: cancels a handler whose lease could not be extended in time;
- forwarder (due scheduled/retry -> pending), recoverer (expired leases -> retry/archive),
  janitor (completed tasks past retention), cancel listener (``asynq:cancel``).
A loop that hits a Redis error logs it, waits and tries again; it never dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import signal
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping

import redis.asyncio as aioredis

from sytq import redis_keys as keys
from sytq.queue import redis_ops
from sytq.queue.acknowledger import Acknowledger
from sytq.queue.cancel_listener import listen_for_cancels
from sytq.queue.config import ServerConfig
from sytq.queue.forwarder import forward_due_tasks
from sytq.queue.heartbeat import Heartbeat
from sytq.queue.held import HeldTasks
from sytq.queue.janitor import delete_expired_completed
from sytq.queue.lease_watchdog import watch_leases
from sytq.queue.outcomes import Outcomes
from sytq.queue.periodic import REDIS_ERRORS, run_periodically
from sytq.queue.processor import Processor
from sytq.queue.recoverer import Recoverer
from sytq.queue.redis_ops import RedisOps
from sytq.queue.task import Handler
from sytq.queue.task_events import TASK_EVENTS_CHANNEL

log = logging.getLogger(__name__)

# How long a starting server waits for its cancel listener before it takes tasks anyway.
CANCEL_LISTENER_WAIT_SECONDS = 5.0


class Server:
    def __init__(self, redis: aioredis.Redis, config: ServerConfig, handlers: Mapping[str, Handler]) -> None:
        config.validate()
        self._redis = redis
        self._ops = RedisOps(redis)
        self._config = config
        self._server_id = str(uuid.uuid4())
        self._server_key = keys.server_info_key(config.host, config.pid, self._server_id)
        self._workers_key = keys.workers_key(config.host, config.pid, self._server_id)
        self._stop = asyncio.Event()
        self._started = asyncio.Event()
        channel = TASK_EVENTS_CHANNEL if config.publish_events else ""
        self._held = HeldTasks()
        self._outcomes = Outcomes(config, redis_ops.CallBatcher(self._ops), channel)
        self._acknowledger = Acknowledger(self._ops, self._held, channel)
        self._processor = Processor(
            self._ops, config, handlers, self._held, self._outcomes, self._acknowledger, self._stop
        )
        self._heartbeat = Heartbeat(
            self._ops, config, self._held, self._server_id, self._server_key, self._workers_key
        )
        self._recoverer = Recoverer(self._ops, config, self._held, self._outcomes)

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
        self._heartbeat.status = "active"
        config = self._config
        log.info(
            "queue server %s (%s) started: queues=%s strict=%s concurrency=%d",
            config.server_name,
            self._server_key,
            dict(config.queues),
            config.strict_priority,
            config.concurrency,
        )
        queues = list(config.queues)
        listening = asyncio.Event()
        background = [
            self._periodic("heartbeat", self._heartbeat.beat, self._heartbeat.tick),
            asyncio.create_task(watch_leases(self._held, config.lease_seconds), name="sytq-lease-watchdog"),
            self._periodic(
                "forwarder", functools.partial(forward_due_tasks, self._ops, queues), config.forward_interval
            ),
            self._periodic("recoverer", self._recoverer.recover_expired, config.recover_interval),
            self._periodic(
                "janitor",
                functools.partial(delete_expired_completed, self._ops, queues),
                config.janitor_interval,
            ),
            asyncio.create_task(
                listen_for_cancels(self._redis, self._held, listening.set), name="sytq-cancel-listener"
            ),
        ]
        flusher = asyncio.create_task(self._acknowledger.run(), name="sytq-acknowledger")
        fetcher = asyncio.create_task(self._fetch_once_listening(listening), name="sytq-processor")
        try:
            self._started.set()
            await self._stop.wait()
            await self._shutdown(fetcher, flusher)
        finally:
            for sig in installed:
                loop.remove_signal_handler(sig)
            runners = self._held.runners()
            for task in (*background, fetcher, flusher, *runners):
                task.cancel()  # runners are left only when run() itself was cancelled: leases expire
            await asyncio.gather(*background, fetcher, flusher, *runners, return_exceptions=True)
            with contextlib.suppress(*REDIS_ERRORS):
                await self._ops.run(redis_ops.clear_server_state_calls(self._server_key, self._workers_key))
            log.info("queue server %s stopped", config.server_name)

    async def _fetch_once_listening(self, listening: asyncio.Event) -> None:
        """Take tasks once the cancel listener has subscribed: a cancel published before then is
        never delivered (pub/sub keeps nothing), so a task taken earlier could not be cancelled."""
        try:
            await asyncio.wait_for(listening.wait(), CANCEL_LISTENER_WAIT_SECONDS)
        except TimeoutError:
            log.warning(
                "cancel listener not subscribed after %.0fs; taking tasks anyway (a cancel sent "
                "before it subscribes is not heard)",
                CANCEL_LISTENER_WAIT_SECONDS,
            )
        await self._processor.fetch_loop()

    @staticmethod
    def _periodic(name: str, step: Callable[[], Awaitable[None]], interval: float) -> asyncio.Task[None]:
        return asyncio.create_task(run_periodically(name, step, interval), name=f"sytq-{name}")

    async def _shutdown(self, fetcher: asyncio.Task[None], flusher: asyncio.Task[None]) -> None:
        self._heartbeat.status = "stopped"
        self._processor.stop_fetching()
        await fetcher  # it finishes its in-flight dequeue, so no fetched task is left unowned
        runners = self._held.runners()
        if runners:
            _, still_running = await asyncio.wait(runners, timeout=self._config.shutdown_timeout)
            for held in list(self._held.by_id.values()):
                if held.runner in still_running and held.runner is not None:
                    held.cancel_reason = held.cancel_reason or "shutdown"
                    held.runner.cancel()
            if still_running:  # a handler that swallows cancellation is left to lease recovery
                await asyncio.wait(still_running, timeout=5.0)
        # Final acknowledgements; the acknowledger retries while Redis blinks, for at most a few seconds.
        # Whatever cannot be written stays active with a lease and is recovered by another server.
        deadline = time.monotonic() + 5.0
        while self._acknowledger.busy and time.monotonic() < deadline:
            self._acknowledger.nudge()
            await asyncio.sleep(0.02)
        flusher.cancel()
