"""``sytq controller``: run the kopf operator with our handlers and settings."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Iterable
from typing import Any

import kopf

from controller import llmtasks, pools, task_event_listener
from controller.context import ControllerContext
from sytq.gc_tuning import freeze_startup_objects
from sytq.health_server import HealthServer, redis_problem
from sytq.k8s_resources import LLMTASK_FINALIZER, LLMTASK_KIND
from sytq.metrics import CONTROLLER_EVENT_BACKLOG, CONTROLLER_MIRRORS
from sytq.settings import Settings, get_settings

__all__ = ["main"]
_HANDLER_MODULES = (llmtasks, pools)  # imported for their kopf registrations
logger = logging.getLogger("controller")
PEERING_LIFETIME_SECONDS = 20
EVENT_FLUSH_SECONDS = 5.0  # on shutdown, Events still queued get this long to go out
# A full garbage collection walks every live object with the event loop stopped: with a thousand
# LLMTasks in flight that took long enough for the apiserver to drop our watch as unresponsive,
# holding back every other watcher of LLMTasks meanwhile. So what exists at startup is frozen
# (never scanned again) and young collections are rarer, which makes full ones rare.
GC_THRESHOLDS = (10_000, 10, 100)


class PoolsOnlyDiffBaseStorage(kopf.AnnotationsDiffBaseStorage):
    """kopf's last-handled-configuration annotation, for LLMWorkerPools only.

    LLMTask specs are immutable and have no create/update handlers, so that annotation would be
    one more write per task for nothing (a 1,000-task burst is apiserver-bound).
    """

    def build(
        self, *, body: kopf.Body, extra_fields: Iterable[kopf.FieldSpec] | None = None
    ) -> kopf.BodyEssence:
        # The essence (a deep copy of the object) is only compared with the stored one, and none
        # is stored for LLMTasks: building it for every watch event was a visible share of a burst's CPU.
        if body.get("kind") == LLMTASK_KIND:
            return kopf.BodyEssence()
        return super().build(body=body, extra_fields=extra_fields)

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        # Nothing stored, nothing to look up (saves a few annotation-key lookups per event).
        if body.get("kind") == LLMTASK_KIND:
            return None
        return super().fetch(body=body)

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        if body.get("kind") == LLMTASK_KIND:
            return
        super().store(body=body, patch=patch, essence=essence)


def kopf_settings() -> kopf.OperatorSettings:
    settings = kopf.OperatorSettings()
    # Our own finalizer and annotations (not kopf.zalando.org/*), and no status.kopf: the CRD
    # schemas stay exact and kopf's bookkeeping never fights with our status.
    settings.persistence.finalizer = LLMTASK_FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="llm.syt.io")
    settings.persistence.diffbase_storage = PoolsOnlyDiffBaseStorage(
        prefix="llm.syt.io", key="last-handled-configuration"
    )
    settings.posting.loggers = False  # only the Events we post on purpose, not every log line
    # No CRD/namespace watching: the RBAC stays small, and our resources are known up front.
    settings.scanning.disabled = True
    # A crashed replica blocks a lower-priority standby until its peering entry expires (kopf's
    # default 60 s); 20 s keeps takeover short at one keep-alive patch every 10-15 s.
    settings.peering.lifetime = PEERING_LIFETIME_SECONDS
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    return settings


@kopf.on.startup()
async def start(memo: kopf.Memo, **_: Any) -> None:
    ours = get_settings()
    ctx = await ControllerContext.create(ours)
    memo["ctx"] = ctx
    memo["listener"] = asyncio.create_task(task_event_listener.listen(ctx), name="task-event-listener")
    memo["event_poster"] = asyncio.create_task(ctx.events.run(), name="event-poster")
    CONTROLLER_MIRRORS.set_function(lambda: len(ctx.wakeups))
    CONTROLLER_EVENT_BACKLOG.set_function(lambda: ctx.events.backlog)
    if ours.metrics_port:
        health = HealthServer(ours.metrics_port, lambda: redis_problem(ctx.redis))
        await health.start()
        memo["health"] = health
    freeze_startup_objects(GC_THRESHOLDS)
    logger.info(
        "controller started: namespaces=%s resync=%ss scale-interval=%ss",
        ours.controller_namespaces or "<all>",
        ours.controller_resync_seconds,
        ours.controller_scale_interval_seconds,
    )


@kopf.on.cleanup()
async def stop(memo: kopf.Memo, **_: Any) -> None:
    ctx: ControllerContext | None = memo.get("ctx")
    if ctx is not None and not await ctx.events.flush(EVENT_FLUSH_SECONDS):
        logger.warning("stopping with %d Event(s) not posted", ctx.events.backlog)
    for name in ("listener", "event_poster"):
        job: asyncio.Task[None] | None = memo.get(name)
        if job is not None:
            job.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await job
    health: HealthServer | None = memo.get("health")
    if health is not None:
        await health.stop()
    if ctx is not None:
        await ctx.close()


def operator_options(settings: Settings) -> dict[str, Any]:
    """Arguments of ``kopf.operator`` for these settings."""
    namespaces = [n.strip() for n in settings.controller_namespaces.split(",") if n.strip()]
    peering = settings.controller_peering.strip()
    return {
        "clusterwide": not namespaces,
        "namespaces": namespaces,
        "standalone": not peering,
        "peering_name": peering or None,
        # Equal priorities make kopf pause every replica; a random one elects a single leader.
        "priority": settings.controller_priority or secrets.randbelow(1_000_000) + 1,
        # /healthz, /readyz and /metrics are served by sytq.health_server (see ``start``)
    }


def main() -> None:
    settings = get_settings()
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)  # one line per handler run is noise
    asyncio.run(kopf.operator(settings=kopf_settings(), memo=kopf.Memo(), **operator_options(settings)))


if __name__ == "__main__":
    main()
