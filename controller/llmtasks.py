"""LLMTask lifecycle: enqueue once, mirror the queue's view into .status, cancel on delete, TTL.

One kopf daemon per unfinished LLMTask does the mirroring. Kopf stops daemons when this replica is
paused by peering, so only the active controller enqueues and patches.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import aiohttp
import kopf
from kubernetes_asyncio.client.exceptions import ApiException
from redis.exceptions import RedisError

from controller.context import ControllerContext
from controller.kopf_registry import spawn_without_finalizer
from controller.kube_events import drain
from controller.status import changed_fields, condition, rfc3339, status_from_task
from sytq.k8s_resources import (
    CLIENT_ANNOTATION,
    DEFAULT_MAX_RETRIES,
    DEFAULT_TIMEOUT_SECONDS,
    FINAL_PHASES,
    GROUP,
    LLMTASK_FINALIZER,
    LLMTASK_PLURAL,
    PHASE_CANCELLED,
    PHASE_FAILED,
    PHASE_PENDING,
    VERSION,
    payload_from_spec,
    task_id_for_uid,
)
from sytq.metrics import CONTROLLER_STATUS_LAG, CONTROLLER_STATUS_PATCHES, labelled
from sytq.queue import QueueError, TaskIdConflictError, TaskInfo, TaskNotFoundError, TaskState
from sytq.tasks import DEFAULT_QUEUE, TYPE_LLM_CHAT, LLMChatPayload

ENQUEUE_RETRY_SECONDS = 2.0
CANCEL_WAIT_ATTEMPTS = 60
MIRROR_RESTART_SECONDS = 2.0
# Progress phases (Queued, Running) wait this long for the task to move on before they are
# patched: well inside the 1 s lag budget, and enough for a quick task to finish first.
PROGRESS_DELAY_SECONDS = 0.3
# A task gone from Redis is enqueued again at most this often in a row before the mirror gives up
# for this round (and tries again at the next resync).
REQUEUE_ATTEMPTS = 3

_EVENT_REASONS = {
    "Queued": ("Normal", "Enqueued"),
    "Running": ("Normal", "Started"),
    "Succeeded": ("Normal", "Succeeded"),
    "Failed": ("Warning", "Failed"),
    "Cancelled": ("Normal", "Cancelled"),
    "Pending": ("Warning", "EnqueueFailed"),
}


def _ctx(memo: Any) -> ControllerContext:
    ctx: ControllerContext = memo["ctx"]
    return ctx


def result_ref(task_id: str) -> str:
    return f"/api/v1/tasks/{task_id}"


async def patch_status(ctx: ControllerContext, namespace: str, name: str, fields: Mapping[str, Any]) -> bool:
    """Merge-patch the status (the caller holds a patch slot); False if the object is gone."""
    try:
        with ctx.status_writes.track():  # Events wait while status patches are in flight
            # The answer (the whole object) is not decoded: nothing here reads it.
            response: aiohttp.ClientResponse = await ctx.custom.patch_namespaced_custom_object_status(
                GROUP,
                VERSION,
                namespace,
                LLMTASK_PLURAL,
                name,
                {"status": dict(fields)},
                _content_type="application/merge-patch+json",  # type: ignore[call-arg]
                _preload_content=False,
            )
            await drain(response)
    except ApiException as exc:
        gone = exc.status == 404
        labelled(CONTROLLER_STATUS_PATCHES, "gone" if gone else "error").inc()
        if gone:
            return False
        raise
    except Exception:
        labelled(CONTROLLER_STATUS_PATCHES, "error").inc()
        raise
    labelled(CONTROLLER_STATUS_PATCHES, "ok").inc()
    return True


def announce(
    ctx: ControllerContext, body: kopf.Body, old_phase: str | None, new_phase: str, message: str
) -> None:
    """Queue a Kubernetes Event for a phase transition the status shows.

    It is posted behind the status patches (controller/kube_events.py). Transitions that were
    coalesced away (a task that finished before its Queued patch) get no Event of their own."""
    if old_phase == new_phase:
        return
    type_, reason = _EVENT_REASONS[new_phase]
    ctx.events.post(body, type_, reason, message)


async def _acquire_unless(slots: asyncio.Semaphore, wake: asyncio.Event) -> bool:
    """Take a slot, or give up as soon as ``wake`` is set; True if the slot is held.

    Never leaks a slot: if the acquisition wins a race with giving up (or with this task being
    cancelled), the slot is released again."""
    if wake.is_set():
        return False
    acquiring = asyncio.ensure_future(slots.acquire())
    woken = asyncio.ensure_future(wake.wait())
    keep = False
    try:
        await asyncio.wait({acquiring, woken}, return_when=asyncio.FIRST_COMPLETED)
        keep = acquiring.done() and not acquiring.cancelled()
    finally:
        woken.cancel()
        if not keep:
            acquiring.cancel()
            acquiring.add_done_callback(lambda task: None if task.cancelled() else slots.release())
    return keep


async def _news_within(wake: asyncio.Event, seconds: float) -> bool:
    """Wait up to ``seconds`` for news; True if there was some."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(wake.wait(), timeout=seconds)
    return wake.is_set()


async def get_task(ctx: ControllerContext, queue: str, task_id: str) -> TaskInfo | None:
    try:
        return await ctx.task_reads.submit((queue, task_id))
    except TaskNotFoundError:
        return None


class _Mirror:
    """Keeps one LLMTask's status in step with its queue task."""

    def __init__(self, ctx: ControllerContext, body: kopf.Body, logger: kopf.Logger) -> None:
        self.ctx = ctx
        self.body = body
        self.logger = logger
        self.name = str(body.metadata.name)
        self.namespace = str(body.metadata.namespace)
        self.spec: Mapping[str, Any] = body.spec
        self.task_id = task_id_for_uid(str(body.metadata.uid))
        self.queue = str(self.spec.get("queue") or DEFAULT_QUEUE)
        self.status: dict[str, Any] = dict(body.status)

    @property
    def phase(self) -> str | None:
        value = self.status.get("phase")
        return str(value) if value else None

    @property
    def identity(self) -> dict[str, Any]:
        """Status fields fixed from the moment the task is enqueued."""
        return {
            "taskId": self.task_id,
            "queue": self.queue,
            "resultRef": result_ref(self.task_id),
            "observedGeneration": self.body.metadata.get("generation", 1),
        }

    async def apply(self, desired: Mapping[str, Any], message: str = "") -> bool:
        """Patch what changed (the caller holds a patch slot); False if the LLMTask is gone."""
        changes = changed_fields(self.status, desired)
        if not changes:
            return True
        old_phase = self.phase
        if not await patch_status(self.ctx, self.namespace, self.name, changes):
            return False
        self.status.update(changes)
        new_phase = self.phase
        news_at = self.ctx.wakeups.take_news_time(self.task_id)
        if news_at is not None and new_phase is not None:
            labelled(CONTROLLER_STATUS_LAG, new_phase).observe(max(0.0, time.time() - news_at))
        if new_phase is not None and new_phase != old_phase:
            announce(self.ctx, self.body, old_phase, new_phase, message or self._describe())
        return True

    async def apply_in_slot(self, desired: Mapping[str, Any], message: str = "") -> bool:
        async with self.ctx.patch_slots:
            return await self.apply(desired, message)

    async def take_off_queue(self) -> bool:
        """Cancel the task if it runs, else remove it (and its retained result); True if it still
        runs (the worker stops it soon)."""
        info = await get_task(self.ctx, self.queue, self.task_id)
        if info is not None and info.state == TaskState.ACTIVE:
            await self.ctx.inspector.cancel_task(self.task_id)
            return True
        if info is not None:
            with contextlib.suppress(TaskNotFoundError):
                await self.ctx.inspector.delete_task(self.queue, self.task_id)
        return False

    def _describe(self) -> str:
        text = f"task {self.task_id} (queue {self.queue}) is {self.phase}"
        if self.status.get("attempts"):
            text += f" after {self.status['attempts']} attempt(s)"
        if self.phase == PHASE_FAILED and self.status.get("error"):
            text += f": {self.status['error']}"
        return text

    async def hold(self) -> bool:
        """Put the finalizer on (before anything is enqueued; a no-op if it is on), so that from
        now on a deletion waits for ``release`` to take the task off the queue; False if the
        LLMTask is gone or its deletion has begun: then nothing may be enqueued, not even again
        after a Redis flush (``release`` may just have taken the task off the queue)."""
        meta: Mapping[str, Any] = self.body.metadata  # kopf keeps a daemon's body up to date
        while not meta.get("deletionTimestamp"):
            if LLMTASK_FINALIZER in (meta.get("finalizers") or []):
                return True
            change = {
                "finalizers": [*(meta.get("finalizers") or []), LLMTASK_FINALIZER],
                "resourceVersion": meta.get("resourceVersion"),  # not over someone else's change
            }
            try:
                response: aiohttp.ClientResponse = await self.ctx.custom.patch_namespaced_custom_object(
                    GROUP,
                    VERSION,
                    self.namespace,
                    LLMTASK_PLURAL,
                    self.name,
                    {"metadata": change},
                    _content_type="application/merge-patch+json",  # type: ignore[call-arg]
                    _preload_content=False,
                )
                await drain(response)
                return True
            except ApiException as exc:
                if exc.status in (404, 422):
                    return False
                if exc.status != 409:
                    raise
            try:  # changed meanwhile: look again
                fresh = await self.ctx.custom.get_namespaced_custom_object(
                    GROUP, VERSION, self.namespace, LLMTASK_PLURAL, self.name
                )
            except ApiException as exc:
                if exc.status == 404:
                    return False
                raise
            meta = fresh["metadata"]
        return False  # being deleted: nothing may be enqueued (again) now

    def _payload(self) -> LLMChatPayload:
        return payload_from_spec(
            self.spec,
            namespace=self.namespace,
            name=self.name,
            default_model=self.ctx.settings.llm_default_model,
            # the API's tenant who asked for it (resource mode): it may read and cancel the task
            client_id=(self.body.metadata.annotations or {}).get(CLIENT_ANNOTATION),
        )

    async def _dispatch(self, payload: LLMChatPayload) -> bool | None:
        """Finalizer on, then enqueue under the LLMTask's task id: True if enqueued now, False if a
        task with that id was there already, None if the LLMTask is gone or being deleted.

        Shielded and registered in ``ctx.enqueues`` from before the finalizer patch: if the
        LLMTask is deleted meanwhile (kopf stops this mirror), ``release`` waits for the dispatch
        to finish before it takes the task off the queue, so no task is left behind."""
        ttl = int(self.spec.get("ttlSecondsAfterFinished") or 0)

        async def hold_then_enqueue() -> bool | None:
            if not await self.hold():
                return None
            try:
                await self.ctx.queue.enqueue(
                    TYPE_LLM_CHAT,
                    payload.model_dump_json(exclude_none=True).encode(),
                    queue=self.queue,
                    task_id=self.task_id,
                    max_retry=int(self.spec.get("maxRetries", DEFAULT_MAX_RETRIES)),
                    timeout=int(self.spec.get("timeoutSeconds", DEFAULT_TIMEOUT_SECONDS)),
                    retention=max(ttl, self.ctx.settings.controller_result_retention_seconds),
                )
            except TaskIdConflictError:
                return False
            return True

        job: asyncio.Future[Any] = asyncio.ensure_future(hold_then_enqueue())
        in_flight = self.ctx.enqueues
        in_flight[self.task_id] = job

        def finished(done: asyncio.Future[Any]) -> None:
            if in_flight.get(self.task_id) is done:
                del in_flight[self.task_id]
            if not done.cancelled():
                done.exception()  # retrieved here in case nobody awaits it any more

        job.add_done_callback(finished)
        outcome: bool | None = await asyncio.shield(job)
        return outcome

    async def enqueue(self) -> bool:
        """Put the task on the queue (once, whatever happens); False if the LLMTask is gone.

        The finalizer goes on first (``_dispatch``). No status patch here: the first sync reports
        Queued, or whatever the task has reached by the time a patch slot is free (under a burst,
        one patch instead of three)."""
        now = datetime.now(UTC)
        try:
            payload = self._payload()
        except ValueError as exc:
            failed = condition("Failed", True, "InvalidSpec", str(exc)[:500], now=now, previous=self.status)
            desired = {
                "phase": PHASE_FAILED,
                "error": f"invalid spec: {exc}"[:2000],
                "completionTime": rfc3339(now),
                "conditions": [failed],
            }
            return await self.apply_in_slot(desired)
        while True:
            try:
                dispatched = await self._dispatch(payload)
                if dispatched is None:
                    return False
                if not dispatched:
                    self.logger.info("task %s was enqueued before; not enqueuing again", self.task_id)
                return True
            except (QueueError, RedisError, OSError) as exc:
                self.logger.warning("cannot enqueue %s: %s", self.task_id, exc)
                waiting = condition(
                    "Queued",
                    False,
                    "EnqueueFailed",
                    str(exc)[:500],
                    now=datetime.now(UTC),
                    previous=self.status,
                )
                if not await self.apply_in_slot({"phase": PHASE_PENDING, "conditions": [waiting]}):
                    return False
                await asyncio.sleep(ENQUEUE_RETRY_SECONDS)

    async def requeue(self) -> bool:
        """The queue task is gone although the LLMTask never finished (Redis was flushed or lost
        its data): enqueue it again from the spec, under the same task id. False if the LLMTask
        is being deleted (then there is nothing to run)."""
        dispatched = await self._dispatch(self._payload())
        if dispatched is None:
            return False
        if dispatched:
            message = (
                f"task {self.task_id} was gone from the queue (Redis flushed?) before it finished;"
                " enqueued again from the spec"
            )
            self.logger.warning("%s/%s: %s", self.namespace, self.name, message)
            self.ctx.events.post(self.body, "Warning", "Requeued", message)
        return True

    async def read(self) -> TaskInfo | None:
        """The task, enqueued again first if it is gone; None if the LLMTask is being deleted."""
        for _ in range(REQUEUE_ATTEMPTS):
            info = await get_task(self.ctx, self.queue, self.task_id)
            if info is not None:
                return info
            if not await self.requeue():
                return None
        raise QueueError(f"task {self.task_id} vanished again right after it was enqueued")

    def _desired(self, info: TaskInfo) -> dict[str, Any]:
        return {
            **self.identity,
            **status_from_task(
                self.status,
                info,
                task_id=self.task_id,
                result_ref=result_ref(self.task_id),
                now=datetime.now(UTC),
            ),
        }

    async def sync(self, wake: asyncio.Event, held_back: bool = False) -> bool:
        """One round of mirroring; False if the LLMTask is gone.

        Final outcomes go out at once, in their own lane of patch slots, so under a burst a
        finished task is not queued behind the Queued/Running patches of newer tasks. Progress
        (Queued, Running) is held back for PROGRESS_DELAY_SECONDS first: a task that finishes
        meanwhile (the common case under a burst of quick calls) gets one Succeeded patch
        instead of two or three. News while holding back or while waiting for a slot means the
        task is read again; once a slot is held it is read once more, so the patch carries the
        freshest state. ``held_back``: the caller has already waited that long."""
        while True:
            if (info := await self.read()) is None:
                return True  # being deleted: release takes over
            desired = self._desired(info)
            if not changed_fields(self.status, desired):
                return True
            if desired["phase"] in FINAL_PHASES:
                slots = self.ctx.final_patch_slots
                waited = slots.locked()
                async with slots:
                    if waited:  # read again: the task may have moved on (e.g. retried) meanwhile
                        if (info := await self.read()) is None:
                            return True
                        desired = self._desired(info)
                    return await self.apply(desired)
            if (held_back or not await _news_within(wake, PROGRESS_DELAY_SECONDS)) and await _acquire_unless(
                self.ctx.patch_slots, wake
            ):
                try:
                    if (info := await self.read()) is None:
                        return True
                    return await self.apply(self._desired(info))
                finally:
                    self.ctx.patch_slots.release()
            held_back = False
            wake.clear()  # the task moved on: read it again

    async def follow(self, wake: asyncio.Event, just_enqueued: bool = False) -> bool:
        """Mirror until the task is final; False if the LLMTask is gone.

        A task enqueued a moment ago is pending: rather than read that, wait for news (or the
        progress delay) first. Under a burst of quick tasks this saves a Redis read per task
        while the controller is busiest, starting a thousand mirrors at once."""
        resync = self.ctx.settings.controller_resync_seconds
        held_back = just_enqueued and not await _news_within(wake, PROGRESS_DELAY_SECONDS)
        while self.phase not in FINAL_PHASES:
            wake.clear()  # before reading: news arriving during the read is not lost
            try:
                if not await self.sync(wake, held_back):
                    return False
                held_back = False
            except (QueueError, RedisError, OSError) as exc:
                self.logger.warning("cannot read task %s: %s", self.task_id, exc)
            if self.phase in FINAL_PHASES:
                return True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), timeout=resync)
        return True

    async def expire_after_ttl(self, stopped: kopf.DaemonStopped) -> None:
        ttl = self.spec.get("ttlSecondsAfterFinished")
        finished = self.status.get("completionTime")
        if ttl is None or self.phase not in FINAL_PHASES or not finished:
            return
        due = datetime.fromisoformat(str(finished).replace("Z", "+00:00")).timestamp() + int(ttl)
        # Wakes when kopf stops the daemon: a deletion (kopf keeps the finalizer until this daemon
        # has exited, and never cancels it) or the controller's shutdown must not wait for the TTL.
        await stopped.wait(max(0.0, due - datetime.now(UTC).timestamp()))
        if stopped:
            return
        await self.take_off_queue()  # a finished task's retained copy: no finalizer does it for us
        try:
            await self.ctx.custom.delete_namespaced_custom_object(
                GROUP, VERSION, self.namespace, LLMTASK_PLURAL, self.name
            )
        except ApiException as exc:
            if exc.status != 404:
                raise
        self.logger.info("deleted %s/%s: ttlSecondsAfterFinished=%s passed", self.namespace, self.name, ttl)


# backoff: a mirror that crashed (e.g. apiserver overloaded) restarts soon, not after kopf's 60 s.
@kopf.daemon(GROUP, VERSION, LLMTASK_PLURAL, id="mirror", backoff=MIRROR_RESTART_SECONDS)
async def mirror_llmtask(
    body: kopf.Body, memo: kopf.Memo, logger: kopf.Logger, stopped: kopf.DaemonStopped, **_: Any
) -> None:
    ctx = _ctx(memo)
    mirror = _Mirror(ctx, body, logger)
    if mirror.phase not in FINAL_PHASES:
        wake = ctx.wakeups.register(mirror.task_id)
        ctx.warmer.ahead_of(len(ctx.wakeups))  # a burst starting: connections for its patches
        try:
            enqueuing = mirror.phase in (None, PHASE_PENDING)
            if enqueuing and not await mirror.enqueue():
                return
            if not enqueuing and not await mirror.hold():
                # Enqueued by a controller that put no finalizer on first, and now deleted:
                # nobody waits for the answer any more.
                await mirror.take_off_queue()
                return
            if not await mirror.follow(wake, just_enqueued=enqueuing and mirror.phase not in FINAL_PHASES):
                await mirror.take_off_queue()  # gone without a finalizer (removed by hand)
                return
        finally:
            ctx.wakeups.unregister(mirror.task_id)
    await mirror.expire_after_ttl(stopped)


def holds_a_task(body: kopf.Body, **_: Any) -> bool:
    """Whether kopf must keep the finalizer (the filter of ``release``): exactly while it is on.

    The mirror puts it on itself, right before it enqueues (kopf adding it at first sight would
    race with the enqueue), or the creator did (``build_llmtask``). kopf so never adds it and
    never takes it off before ``release`` has run on deletion, which also removes a finished
    task's retained copy from Redis. A task with an invalid spec is never enqueued and never
    gets one."""
    return LLMTASK_FINALIZER in (body.metadata.get("finalizers") or [])


@kopf.on.delete(GROUP, VERSION, LLMTASK_PLURAL, id="release", when=holds_a_task)
async def release_llmtask(
    body: kopf.Body, memo: kopf.Memo, logger: kopf.Logger, retry: int, **_: Any
) -> None:
    """Take the task off the queue; a running one is cancelled first, then removed."""
    ctx = _ctx(memo)
    mirror = _Mirror(ctx, body, logger)
    in_flight = ctx.enqueues.get(mirror.task_id)
    if in_flight is not None:  # the stopped mirror's enqueue: let it land, then take it off
        await asyncio.wait([in_flight])
    if await mirror.take_off_queue():
        await _mark_cancelled(mirror, "cancelling the running task")
        if retry < CANCEL_WAIT_ATTEMPTS:
            raise kopf.TemporaryError("waiting for the worker to stop the task", delay=1)
        logger.warning("task %s is still running after cancellation; leaving it to finish", mirror.task_id)
        return
    await _mark_cancelled(mirror, "removed from the queue")


async def _mark_cancelled(mirror: _Mirror, message: str) -> None:
    if mirror.phase in FINAL_PHASES:
        return
    now = datetime.now(UTC)
    await mirror.apply_in_slot(
        {
            "phase": PHASE_CANCELLED,
            "completionTime": rfc3339(now),
            "conditions": [
                condition(
                    "Failed",
                    True,
                    "Cancelled",
                    f"LLMTask deleted: {message}",
                    now=now,
                    previous=mirror.status,
                )
            ],
        },
        message=f"task {mirror.task_id}: {message}",
    )


# No kopf finalizer: the mirror ends by itself when its LLMTask is gone (a 404), and ``release``
# asks for the finalizer when a task must be cancelled on delete.
spawn_without_finalizer(mirror_llmtask)
