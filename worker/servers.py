"""The worker's two queue servers: the LLM queues' and the callback queue's, with slots of its own."""

from __future__ import annotations

import asyncio
import dataclasses
import functools

import redis.asyncio as aioredis

from sytq.queue import Server, ServerConfig
from sytq.settings import Settings
from sytq.tasks import TYPE_CALLBACK_DELIVER
from worker.callback import handle_callback
from worker.handlers import handlers_for
from worker.llm_run import retry_delay_for
from worker.pipeline import Pipeline


def server_config(settings: Settings) -> ServerConfig:
    return ServerConfig(
        queues=settings.queue_weights,
        strict_priority=settings.strict_priority,
        # Calls in flight are capped by the provider client; the extra slots keep it busy (see
        # Settings.effective_worker_prefetch).
        concurrency=settings.worker_concurrency + settings.effective_worker_prefetch,
        shutdown_timeout=settings.shutdown_timeout,
        publish_events=settings.publish_task_events,
        retry_delay=retry_delay_for(settings),
    )


def callback_server_config(settings: Settings, base: ServerConfig) -> ServerConfig:
    """``base`` (timings, events, retry delay) serving only the callback queue with its own slots."""
    return dataclasses.replace(
        base,
        queues={settings.callback_queue: 1},
        strict_priority=False,
        concurrency=settings.callback_concurrency,
    )


class WorkerServers:
    """Both servers, started and stopped together. Callbacks never take an LLM slot: a receiver
    that answers slowly holds one of SYTQ_CALLBACK_CONCURRENCY slots until its deadline, nothing
    else. The LLM server still hosts callback:deliver, for tasks queued on user queues before
    callbacks had a queue of their own."""

    def __init__(
        self,
        redis: aioredis.Redis,
        settings: Settings,
        pipeline: Pipeline,
        config: ServerConfig | None = None,
    ) -> None:
        config = config or server_config(settings)
        self.llm = Server(redis, config, handlers_for(pipeline))
        deliver = functools.partial(handle_callback, pipeline)
        self.callbacks = Server(
            redis, callback_server_config(settings, config), {TYPE_CALLBACK_DELIVER: deliver}
        )

    async def run(self, install_signal_handlers: bool = True) -> None:
        callbacks = asyncio.create_task(self.callbacks.run(install_signal_handlers=False))
        callbacks.add_done_callback(lambda _: self.llm.request_stop())  # one stops, both stop
        try:
            await self.llm.run(install_signal_handlers=install_signal_handlers)
        finally:
            # After the LLM server: its last tasks may still queue callbacks.
            self.callbacks.request_stop()
            await callbacks

    def request_stop(self) -> None:
        self.llm.request_stop()

    async def wait_started(self) -> None:
        await self.llm.wait_started()
        await self.callbacks.wait_started()
