"""The dependencies every handler shares: task store, provider client, queue client, callback proxy."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from urllib.parse import urlsplit

import redis.asyncio as aioredis

from sytq.http1 import DIRECT, Proxy, parse_proxy, proxy_for
from sytq.llm import CircuitBreaker, LLMClient, SharedLimiter
from sytq.queue import QueueClient
from sytq.settings import Settings
from sytq.storage import RecordStore, TaskStore, upgrade

log = logging.getLogger(__name__)


@dataclass
class Pipeline:
    settings: Settings
    store: TaskStore
    llm: LLMClient
    queue: QueueClient
    callback_proxy: Proxy | None  # None: callbacks connect directly
    records: RecordStore

    async def close(self) -> None:
        await self.llm.aclose()
        await self.store.close()
        await self.records.close()


def _provider_name(base_url: str) -> str:
    return urlsplit(base_url).netloc or base_url


def callback_proxy(settings: Settings) -> Proxy | None:
    setting = (settings.callback_proxy or "").strip()
    return None if setting.lower() in ("", DIRECT) else parse_proxy(setting)


def build_pipeline(settings: Settings, redis: aioredis.Redis, *, migrate: bool = True) -> Pipeline:
    """Wire the pipeline from settings; runs the storage migrations first (blocking, once at start)."""
    database_url = settings.effective_database_url
    if migrate:
        upgrade(database_url)
    provider = _provider_name(settings.llm_base_url)
    api_key = settings.deepseek_api_key.get_secret_value() if settings.deepseek_api_key else None
    limiter = SharedLimiter(
        redis,
        provider,
        max_in_flight=settings.llm_max_in_flight,
        requests_per_minute=settings.llm_requests_per_minute,
        tokens_per_minute=settings.llm_tokens_per_minute,
    )
    llm = LLMClient(
        settings.llm_base_url,
        api_key,
        max_calls=settings.worker_concurrency,
        connect_timeout=settings.llm_connect_timeout,
        read_timeout=settings.llm_read_timeout,
        breaker=CircuitBreaker(provider, settings.llm_breaker_failures, settings.llm_breaker_reset_seconds),
        limiter=limiter if limiter.enabled else None,
        stream=settings.llm_stream,
        proxy=proxy_for(settings.llm_base_url, settings.llm_proxy),
    )
    wait = settings.database_outage_wait_seconds
    # Enough DB threads to keep up with a busy worker without exhausting MySQL connections.
    threads = max(4, min(32, settings.worker_concurrency // 50))
    return Pipeline(
        settings=settings,
        store=TaskStore.from_url(database_url, threads=threads, retry_for_seconds=wait),
        llm=llm,
        queue=QueueClient(redis),
        callback_proxy=callback_proxy(settings),
        records=RecordStore.from_url(
            settings.effective_record_database_url, settings.record_table_allowlist, retry_for_seconds=wait
        ),
    )
