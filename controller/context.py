"""Long-lived things the handlers share: settings, Redis/queue access, Kubernetes clients, wake-ups."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import redis.asyncio as aioredis
from kubernetes_asyncio import client as kclient

from controller.kube_events import EventPoster, InFlight, drain
from controller.warmup import ConnectionWarmer
from sytq.coalesce import Coalescer
from sytq.k8s_resources import kube_api_client
from sytq.queue import Inspector, QueueClient, TaskInfo
from sytq.redis_connect import connect
from sytq.settings import ConfigError, Settings

# Events go out behind the status patches (controller/kube_events.py): this few at a time, so during a
# creation storm they take a small share of the apiserver and catch up afterwards.
EVENT_POSTERS = 2
EVENT_BACKLOG = 100_000
EVENT_MAX_DEFER_SECONDS = 10.0  # an Event waits at most this long for the status patches to pause
EVENT_SETTLE_SECONDS = 0.25  # ... and a pause is this long without status patches
# Final outcomes are what the lag promise is about: under a creation storm the apiserver shares
# its CPU among the requests in flight, so this lane may hold more of them than the progress lane.
FINAL_LANE_FACTOR = 4
# The mirrors' task reads share round trips (a burst wakes hundreds of them at once).
TASK_READ_BATCH = 256


@dataclass
class Wakeups:
    """task id -> event set when the workers report news about that task.

    Only tasks whose LLMTask is being watched by a live mirror are registered; news about others
    is dropped (the periodic resync covers anything a paused or restarted controller missed). The
    latest news time per task is kept until a status patch takes it (for the lag metric).
    """

    _events: dict[str, asyncio.Event] = field(default_factory=dict)
    _news_at: dict[str, float] = field(default_factory=dict)

    def register(self, task_id: str) -> asyncio.Event:
        return self._events.setdefault(task_id, asyncio.Event())

    def unregister(self, task_id: str) -> None:
        self._events.pop(task_id, None)
        self._news_at.pop(task_id, None)

    def notify(self, task_id: str, at: float | None = None) -> bool:
        event = self._events.get(task_id)
        if event is None:
            return False
        event.set()
        if at is not None and at > self._news_at.get(task_id, 0.0):
            self._news_at[task_id] = at
        return True

    def take_news_time(self, task_id: str) -> float | None:
        """When the latest news about the task happened (the worker's clock), once."""
        return self._news_at.pop(task_id, None)

    def notify_all(self) -> None:
        for event in self._events.values():
            event.set()

    def __len__(self) -> int:
        return len(self._events)


@dataclass
class ControllerContext:
    settings: Settings
    redis: aioredis.Redis
    queue: QueueClient
    inspector: Inspector
    api: kclient.ApiClient
    custom: kclient.CustomObjectsApi
    apps: kclient.AppsV1Api
    patch_slots: asyncio.Semaphore
    final_patch_slots: asyncio.Semaphore
    events: EventPoster
    status_writes: InFlight
    task_reads: Coalescer[tuple[str, str], TaskInfo]  # (queue, task id) -> the task
    warmer: ConnectionWarmer
    wakeups: Wakeups = field(default_factory=Wakeups)
    # task id -> its enqueue in flight: a deletion waits for it before taking the task off the queue
    enqueues: dict[str, asyncio.Future[Any]] = field(default_factory=dict)

    @classmethod
    async def create(cls, settings: Settings) -> ControllerContext:
        if not settings.redis_url:
            raise ConfigError("the controller needs SYTQ_REDIS_URL (the Redis its workers use)")
        redis = connect(settings.redis_url)
        # Two lanes of patches (see llmtasks.sync), the Event posters, reads, creates and deletes.
        progress, final = (
            settings.controller_max_patches_in_flight,
            FINAL_LANE_FACTOR * settings.controller_max_patches_in_flight,
        )
        api = await kube_api_client(progress + final + EVENT_POSTERS + 8)
        status_writes = InFlight(settle=EVENT_SETTLE_SECONDS)
        inspector = Inspector(redis)
        return cls(
            settings=settings,
            redis=redis,
            queue=QueueClient(redis),
            inspector=inspector,
            api=api,
            custom=kclient.CustomObjectsApi(api),
            apps=kclient.AppsV1Api(api),
            patch_slots=asyncio.Semaphore(progress),
            final_patch_slots=asyncio.Semaphore(final),
            events=EventPoster(
                kclient.CoreV1Api(api),
                concurrency=EVENT_POSTERS,
                capacity=EVENT_BACKLOG,
                yield_to=status_writes,
                max_defer=EVENT_MAX_DEFER_SECONDS,
            ),
            status_writes=status_writes,
            task_reads=Coalescer(inspector.get_tasks, max_batch=TASK_READ_BATCH),
            warmer=ConnectionWarmer(lambda: touch_apiserver(api), most=final),
        )

    async def close(self) -> None:
        await self.warmer.close()
        await self.api.close()
        await self.redis.aclose()


async def touch_apiserver(api: kclient.ApiClient) -> None:
    """GET /version (open to every authenticated client): one pooled connection's worth of work."""
    response: aiohttp.ClientResponse = await kclient.VersionApi(api).get_code(  # type: ignore[assignment]
        _preload_content=False
    )
    await drain(response)
