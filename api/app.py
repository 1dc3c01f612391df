"""The FastAPI application and what is served: ``api.app:create_asgi_app`` (``sytq api``)."""

from __future__ import annotations

import gc
import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import redis.asyncio as aioredis
from fastapi import FastAPI
from starlette.types import ASGIApp

from api import (
    resource_lookup,
    resource_submitter,
    routes_health,
    routes_legacy,
    routes_queues,
    routes_submit,
    routes_tasks,
)
from api.auth import load_identities
from api.errors import install_error_handlers
from api.fast_lane import InstantRoute, SubmitFastLane
from api.go_request_metrics import GoRequestMetrics
from api.middleware import BodyLimitMiddleware, JsonByDefaultMiddleware
from api.openapi import install_openapi
from api.state import AppState
from api.submitter import QueueSubmitter, TaskSubmitter
from sytq import metrics_go
from sytq.callbacks import parse_allow_nets
from sytq.gc_tuning import freeze_startup_objects
from sytq.idempotency import IdempotencyStore
from sytq.queue import Inspector, QueueClient
from sytq.ratelimit import RateLimiter
from sytq.redis_connect import connect
from sytq.settings import ConfigError, Settings, get_settings

log = logging.getLogger("sytq.api")
# Young collections every 10,000 allocations rather than 700: a 500-task batch allocates several
# thousand short-lived objects, and each young collection walked them (the worker's thresholds).
GC_THRESHOLDS = (10_000, 10, 1_000)


def redis_client(url: str) -> aioredis.Redis:
    # Short timeouts: when Redis is down a caller gets a quick 503, not a hung request.
    return connect(url, socket_connect_timeout=2.0, socket_timeout=5.0, max_connections=512)


def _submitter(settings: Settings, redis: aioredis.Redis) -> TaskSubmitter:
    if not settings.api_resource_mode:
        client = QueueClient(
            redis, wait_replicas=settings.redis_wait_replicas, wait_timeout_ms=settings.redis_wait_timeout_ms
        )
        return QueueSubmitter(client)
    return resource_submitter.create_submitter(settings, redis)


def _task_store(settings: Settings) -> Any:
    try:
        from sytq.storage import TaskStore

        # No waiting out a lost database here (the worker does that): a read fails fast instead.
        return TaskStore.from_url(settings.effective_database_url, threads=4, retry_for_seconds=0)
    except Exception as exc:  # the API still serves submits without its database
        log.error("cannot open the task database (%s); results will not be shown", exc)
        return None


def id_secret(settings: Settings, auth_disabled: bool) -> bytes:
    """The key of idempotency-derived task ids; every replica must share it (see configuration.md)."""
    secret = settings.effective_id_secret
    if secret is not None:
        return secret
    if not auth_disabled:
        raise ConfigError(
            "set SYTQ_ID_SECRET (or SYTQ_CALLBACK_SECRET, from which it is derived): idempotency-derived"
            " task ids are keyed by it, and every API replica must share it"
        )
    log.warning("no SYTQ_ID_SECRET or SYTQ_CALLBACK_SECRET: idempotency keys hold only for this process")
    return secrets.token_bytes(32)


def build_state(settings: Settings) -> AppState:
    identities = load_identities(settings)
    if not settings.redis_url:
        raise ConfigError("SYTQ_REDIS_URL is not set (`sytq run` starts an embedded Valkey for you)")
    parse_allow_nets(settings.callback_allow_nets)  # a bad CIDR fails at start, not at the first submit
    redis = redis_client(settings.redis_url)
    return AppState(
        settings=settings,
        identities=identities,
        redis=redis,
        submitter=_submitter(settings, redis),
        inspector=Inspector(redis),
        limiter=RateLimiter(redis, settings.api_rate_limit_per_minute),
        idempotency=IdempotencyStore(
            redis, max(settings.task_retention_seconds, 3600), id_secret(settings, identities.disabled)
        ),
        store=_task_store(settings),
        allow_nets=settings.callback_allow_nets,
        served_queues=frozenset(settings.queue_weights),
        record_tables=settings.record_table_allowlist,
    )


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    state = build_state(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # What exists now (modules, the app, pydantic's validators) lives as long as the process:
        # frozen, full collections stop scanning it. Without this, collections triggered by a
        # batch's short-lived objects cost about a third of a batch submit's CPU.
        thresholds = gc.get_threshold()
        freeze_startup_objects(GC_THRESHOLDS)
        try:
            yield
        finally:
            gc.unfreeze()  # an app created in a longer-lived process (tests) leaves no frozen garbage
            gc.set_threshold(*thresholds)
        close_submitter = getattr(state.submitter, "aclose", None)  # resource mode: its kube client
        if close_submitter is not None:
            await close_submitter()
        await state.redis.aclose()
        dispose = getattr(state.store, "close", None) or getattr(state.store, "dispose", None)
        if dispose is not None:
            result = dispose()
            if hasattr(result, "__await__"):
                await result

    app = FastAPI(
        title="SYT Queue API",
        version="0.1.0",
        description=(
            "Submit LLM calls to the queue and follow them."
            " Auth: `Authorization: Bearer <key>` or HTTP Basic."
        ),
        lifespan=lifespan,
    )
    app.state.sytq = state
    install_error_handlers(app)
    app.add_middleware(JsonByDefaultMiddleware, paths=routes_submit.JSON_PATHS)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.api_max_body_bytes)
    # Resource mode's GET also answers for LLMTasks not enqueued yet; it replaces the plain one.
    app.include_router(resource_lookup.router if settings.api_resource_mode else routes_tasks.get_router)
    for module in (routes_submit, routes_legacy, routes_tasks, routes_queues, routes_health):
        app.include_router(module.router)
    install_openapi(app, routes_submit.SELF_PARSED_BODIES)
    return app


def create_asgi_app(settings: Settings | None = None) -> ASGIApp:
    """What the server runs: the FastAPI app behind the submit routes' fast lane."""
    settings = settings or get_settings()
    app = create_app(settings)
    routes = {
        routes_submit.SUBMIT_PATH: routes_submit.submit_llm,
        routes_submit.BATCH_PATH: routes_submit.submit_llm_batch,
        routes_legacy.SUBMIT_PATH: routes_legacy.submit_process,
    }
    instant: dict[str, InstantRoute] = {
        routes_submit.SUBMIT_PATH: routes_submit.submit_llm_now,
        routes_legacy.SUBMIT_PATH: routes_legacy.submit_process_now,
    }
    served: ASGIApp = SubmitFastLane(app, routes, settings.api_max_body_bytes, instant)
    if settings.metrics_go_compat:
        metrics_go.enable()
        served = GoRequestMetrics(served, fixed_paths=routes, renamed=routes_legacy.GIN_FULL_PATHS)
    return served
