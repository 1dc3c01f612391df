"""``sytq worker``: runs the queue server with the pipeline's handlers until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

import redis.asyncio as aioredis
import uvloop

from sytq import metrics_go
from sytq.gc_tuning import freeze_startup_objects
from sytq.health_server import HealthServer, ReadyCheck, redis_problem
from sytq.log_setup import configure_logging
from sytq.queue import Inspector, ServerConfig
from sytq.redis_connect import connect
from sytq.settings import ConfigError, Settings, get_settings
from worker.health import export_queue_depth
from worker.pipeline import Pipeline, build_pipeline
from worker.reconciler import Reconciler
from worker.servers import WorkerServers, server_config

log = logging.getLogger("sytq.worker")
T = TypeVar("T")
__all__ = ["main", "run_event_loop", "run_worker", "server_config", "worker_redis"]


def run_event_loop(main: Coroutine[Any, Any, T]) -> T:
    """Run the worker on uvloop: with thousands of calls in flight the event loop's own overhead
    (callbacks, timers, socket reads) is a large share of the CPU per task, and uvloop's is lower."""
    return uvloop.run(main)


# Cyclic GC: with the default thresholds, thousands of calls in flight made full collections frequent
# and long (each scans every held task's coroutines and connections, collecting nothing): a large
# share of the worker's CPU and loop stalls that delay answers. Young collections every 10,000 net
# allocations and a full one after 1,000 of those keep cycles bounded at a fraction of that cost
# (figures: bench/results/notes.md).
GC_THRESHOLDS = (10_000, 10, 1_000)


def worker_redis(url: str, max_connections: int = 128) -> aioredis.Redis:
    """A client whose pool waits for a free connection: a plain pool raises "Too many connections"
    once thousands of handlers write results at the same moment, failing tasks that succeeded."""
    return connect(url, max_connections=max_connections, wait_for_connection=60)


def _ready_check(redis: aioredis.Redis, pipeline: Pipeline) -> ReadyCheck:
    async def check() -> str | None:
        problem = await redis_problem(redis)
        if problem is not None:
            return problem
        try:
            async with asyncio.timeout(10):
                if not await pipeline.store.ping():
                    return "database unreachable"
        except TimeoutError:
            return "database unreachable: no answer within 10 s"
        return None

    return check


def _start_reconciler(
    settings: Settings, pipeline: Pipeline, redis: aioredis.Redis
) -> asyncio.Task[None] | None:
    """The fleet's reconciler (one worker at a time is active: it holds a Redis lease)."""
    if not settings.reconcile_interval_seconds:
        return None
    reconciler = Reconciler(
        pipeline, redis, interval=settings.reconcile_interval_seconds, grace=settings.reconcile_grace_seconds
    )
    return asyncio.create_task(reconciler.run(), name="sytq-reconciler")


async def run_worker(settings: Settings, config: ServerConfig | None = None) -> None:
    """Run until stopped; ``config`` overrides the queue server's configuration (tests, benchmarks)."""
    if not settings.redis_url:
        raise ConfigError("sytq worker needs SYTQ_REDIS_URL (the embedded Valkey is only for `sytq run`)")
    settings.check_callback_signing()
    if not settings.callback_secret:
        log.warning("SYTQ_CALLBACK_UNSIGNED=true: callbacks go out WITHOUT a signature")
    if settings.uses_stub_llm:
        log.warning("NO DEEPSEEK_API_KEY and no SYTQ_LLM_BASE_URL: provider calls will be refused (401)")
    redis = worker_redis(settings.redis_url)
    pipeline = await asyncio.to_thread(build_pipeline, settings, redis)
    servers = WorkerServers(redis, settings, pipeline, config)
    if settings.metrics_go_compat:
        metrics_go.enable()
        metrics_go.workers(settings.worker_concurrency)
    freeze_startup_objects(GC_THRESHOLDS)
    health: HealthServer | None = None
    depth = asyncio.create_task(export_queue_depth(Inspector(redis)))
    reconciler = _start_reconciler(settings, pipeline, redis)
    try:
        if settings.metrics_port:
            health = HealthServer(
                settings.metrics_port, _ready_check(redis, pipeline), go_metrics=settings.metrics_go_compat
            )
            await health.start()
        log.info(
            "worker started: queues=%s concurrency=%d provider=%s proxy=%s; "
            "callbacks: queue=%s concurrency=%d",
            settings.queues,
            settings.worker_concurrency,
            settings.llm_base_url,
            pipeline.llm.proxy.url if pipeline.llm.proxy else "none",
            settings.callback_queue,
            settings.callback_concurrency,
        )
        await servers.run(install_signal_handlers=True)
    finally:
        for background in (depth, reconciler):
            if background is not None:
                background.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await background
        if health is not None:
            await health.stop()
        await pipeline.close()
        await redis.aclose()
        log.info("worker stopped")


def main() -> None:
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_json)
    try:
        run_event_loop(run_worker(settings))
    except ConfigError as exc:
        log.error("%s", exc)
        raise SystemExit(2) from exc


if __name__ == "__main__":
    main()
