"""What the routes share for the life of the process, built once in the app's lifespan."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from fastapi import Request

from api.auth import Identities
from api.submitter import TaskSubmitter
from sytq.idempotency import IdempotencyStore
from sytq.queue import Inspector
from sytq.ratelimit import RateLimiter
from sytq.settings import Settings

log = logging.getLogger("sytq.api")

# The API answers from the queue alone rather than hold a request while the database is away.
DB_READ_TIMEOUT_SECONDS = 3.0


@dataclass
class AppState:
    settings: Settings
    identities: Identities
    redis: aioredis.Redis
    submitter: TaskSubmitter
    inspector: Inspector
    limiter: RateLimiter
    idempotency: IdempotencyStore
    store: Any  # sytq.storage.TaskStore, or None when the database cannot be opened
    allow_nets: str
    served_queues: frozenset[str] = frozenset()  # SYTQ_QUEUES: where a submit may go
    record_tables: frozenset[str] = frozenset()  # SYTQ_RECORD_TABLES: what llm:process may name

    async def get_record(self, task_id: str) -> tuple[Any, bool]:
        """The stored row (or None) and whether the database answered at all."""
        if self.store is None:
            return None, False
        try:
            return await asyncio.wait_for(self.store.get(task_id), DB_READ_TIMEOUT_SECONDS), True
        except Exception as exc:  # a DB outage must not hide what the queue knows
            log.warning("task store unavailable: %s", exc)
            return None, False

    async def database_ready(self) -> bool:
        if self.store is None:
            return False
        try:
            return bool(await asyncio.wait_for(self.store.ping(), DB_READ_TIMEOUT_SECONDS))
        except Exception as exc:
            log.warning("database not ready: %s", exc)
            return False

    async def redis_ready(self) -> bool:
        try:
            return bool(await asyncio.wait_for(self.redis.ping(), timeout=2.0))
        except Exception as exc:
            log.warning("redis not ready: %s", exc)
            return False


def app_state(request: Request) -> AppState:
    state: AppState = request.app.state.sytq
    return state


def raw_header(request: Request, name: bytes) -> str | None:
    """The first ``name`` header (lower-case, as ASGI gives them), read without building ``Headers``."""
    return header_value(request.scope["headers"], name)


def header_value(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> str | None:
    """The first ``name`` header of an ASGI header list (names lower-case), as text."""
    for key, value in headers:
        if key == name:
            text: str = value.decode("latin-1")
            return text
    return None
