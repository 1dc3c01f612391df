"""Long-lived things the handlers share: settings, Redis/queue access, Kubernetes clients, wake-ups."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import redis.asyncio as aioredis
from kubernetes_asyncio import client as kclient

from sytq.k8s_resources import kube_api_client
from sytq.queue import Inspector, QueueClient
from sytq.settings import ConfigError, Settings


@dataclass
class Wakeups:
    """task id -> event set when the workers report news about that task.

    Only tasks whose LLMTask is being watched by a live mirror are registered; news about others
    is dropped (the periodic resync covers anything a paused or restarted controller missed).
    """

    _events: dict[str, asyncio.Event] = field(default_factory=dict)

    def register(self, task_id: str) -> asyncio.Event:
        return self._events.setdefault(task_id, asyncio.Event())

    def unregister(self, task_id: str) -> None:
        self._events.pop(task_id, None)

    def notify(self, task_id: str) -> bool:
        event = self._events.get(task_id)
        if event is None:
            return False
        event.set()
        return True

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
    wakeups: Wakeups = field(default_factory=Wakeups)

    @classmethod
    async def create(cls, settings: Settings) -> ControllerContext:
        if not settings.redis_url:
            raise ConfigError("the controller needs SYTQ_REDIS_URL (the Redis its workers use)")
        redis = aioredis.Redis.from_url(settings.redis_url)
        # Two lanes of patches (see llmtasks.sync) plus reads, creates and deletes.
        api = await kube_api_client(2 * settings.controller_max_patches_in_flight + 8)
        return cls(
            settings=settings,
            redis=redis,
            queue=QueueClient(redis),
            inspector=Inspector(redis),
            api=api,
            custom=kclient.CustomObjectsApi(api),
            apps=kclient.AppsV1Api(api),
            patch_slots=asyncio.Semaphore(settings.controller_max_patches_in_flight),
            final_patch_slots=asyncio.Semaphore(settings.controller_max_patches_in_flight),
        )

    async def close(self) -> None:
        await self.api.close()
        await self.redis.aclose()
