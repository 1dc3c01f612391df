"""Kubernetes Events for LLMTask transitions, posted behind the status patches.

Under a burst every Event is one more apiserver write per task, and the apiserver is what limits
the status-mirroring lag. So an Event is not posted when the transition happens: it waits in a
queue and a few posters send it with the transition's own timestamp, a few in flight at a time.
During a creation storm the backlog grows and drains once the storm is over; in quiet times an
Event goes out a quarter second after its status patch. Events are auxiliary (as in kopf): a
refused one is logged, not retried forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp
from kubernetes_asyncio import client as kclient
from kubernetes_asyncio.client.exceptions import ApiException

from sytq.metrics import CONTROLLER_EVENTS, labelled

logger = logging.getLogger(__name__)

COMPONENT = "syt-queue-controller"
MESSAGE_MAX_CHARS = 1024
RETRY_DELAY_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class PendingEvent:
    namespace: str
    involved: dict[str, str]
    type: str
    reason: str
    message: str
    at: datetime

    def body(self, instance: str) -> dict[str, Any]:
        stamp = self.at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return {
            "metadata": {"generateName": f"{self.involved['name']}.", "namespace": self.namespace},
            "involvedObject": self.involved,
            "type": self.type,
            "reason": self.reason,
            "message": self.message[:MESSAGE_MAX_CHARS],
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
            "source": {"component": COMPONENT},
            "reportingComponent": COMPONENT,
            "reportingInstance": instance,
        }


def involved_object(body: Mapping[str, Any]) -> dict[str, str]:
    """The ``involvedObject`` reference of a Kubernetes object."""
    meta = body["metadata"]
    return {
        "apiVersion": str(body["apiVersion"]),
        "kind": str(body["kind"]),
        "name": str(meta["name"]),
        "namespace": str(meta["namespace"]),
        "uid": str(meta["uid"]),
    }


class InFlight:
    """Counts writes in flight; ``quiet`` is set once there have been none for ``settle`` seconds
    (a creation storm finishes tasks in waves: a short gap between two waves is not quiet)."""

    def __init__(self, settle: float = 0.0) -> None:
        self.count = 0
        self.settle = settle
        self.quiet = asyncio.Event()
        self.quiet.set()
        self._settling: asyncio.TimerHandle | None = None

    @contextlib.contextmanager
    def track(self) -> Iterator[None]:
        self.count += 1
        self.quiet.clear()
        if self._settling is not None:
            self._settling.cancel()
            self._settling = None
        try:
            yield
        finally:
            self.count -= 1
            if not self.count:
                if self.settle > 0:
                    self._settling = asyncio.get_running_loop().call_later(self.settle, self.quiet.set)
                else:
                    self.quiet.set()


class EventPoster:
    """A bounded FIFO of Events and ``concurrency`` coroutines posting them.

    Each post waits for ``yield_to`` (the status patches) to be quiet, at most ``max_defer``
    seconds: during a creation storm Events fill the gaps between bursts of status patches
    instead of competing with them. ``capacity`` bounds memory if the apiserver refuses Events
    for a long time: beyond it the oldest waiting Event is dropped (and counted), never a status
    patch."""

    def __init__(
        self,
        core: kclient.CoreV1Api,
        *,
        concurrency: int,
        capacity: int,
        yield_to: InFlight | None = None,
        max_defer: float = 10.0,
    ) -> None:
        self.core = core
        self.concurrency = concurrency
        self.capacity = capacity
        self.yield_to = yield_to
        self.max_defer = max_defer
        self.instance = socket.gethostname()
        self.dropped = 0
        self.refused = 0
        self.posted = 0
        self._queue: deque[PendingEvent] = deque()
        self._ready = asyncio.Event()
        self._busy = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def post(
        self, body: Mapping[str, Any], type_: str, reason: str, message: str, at: datetime | None = None
    ) -> None:
        """Queue an Event about ``body`` (never blocks, never raises)."""
        involved = involved_object(body)
        event = PendingEvent(involved["namespace"], involved, type_, reason, message, at or datetime.now(UTC))
        if len(self._queue) >= self.capacity:
            self._queue.popleft()
            self.dropped += 1
            labelled(CONTROLLER_EVENTS, "dropped").inc()
            if self.dropped == 1 or self.dropped % 1000 == 0:
                logger.warning("event backlog full (%d): %d Event(s) dropped", self.capacity, self.dropped)
        self._queue.append(event)
        self._idle.clear()
        self._ready.set()

    @property
    def backlog(self) -> int:
        return len(self._queue)

    async def run(self) -> None:
        """Post until cancelled."""
        async with asyncio.TaskGroup() as group:
            for i in range(self.concurrency):
                group.create_task(self._poster(), name=f"event-poster-{i}")

    async def flush(self, seconds: float) -> bool:
        """Wait until every queued Event is posted (at most ``seconds``); True if none is left."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), seconds)
        return self._idle.is_set()

    async def _poster(self) -> None:
        while True:
            while not self._queue:
                self._ready.clear()
                await self._ready.wait()
            if self.yield_to is not None and not self.yield_to.quiet.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.yield_to.quiet.wait(), self.max_defer)
                if not self._queue:  # another poster took the last one meanwhile
                    continue
            event = self._queue.popleft()
            self._busy += 1
            try:
                await self._send(event)
            finally:
                self._busy -= 1
                if not self._queue and not self._busy:
                    self._idle.set()

    async def _send(self, event: PendingEvent) -> None:
        for attempt in (1, 2):
            try:
                await self._create(event)
            except ApiException as exc:
                if exc.status is not None and exc.status < 500 and exc.status != 429:
                    self._refused()
                    logger.warning(
                        "Event %s for %s refused: %s", event.reason, event.involved["name"], exc.reason
                    )
                    return
                error: Exception = exc
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                error = exc
            else:
                self.posted += 1
                labelled(CONTROLLER_EVENTS, "posted").inc()
                return
            if attempt == 1:
                await asyncio.sleep(RETRY_DELAY_SECONDS)
        self._refused()
        logger.warning("Event %s for %s not posted: %s", event.reason, event.involved["name"], error)

    def _refused(self) -> None:
        self.refused += 1
        labelled(CONTROLLER_EVENTS, "refused").inc()

    async def _create(self, event: PendingEvent) -> None:
        # A plain dict serializes like a CoreV1Event, and the answer is not turned into one: its
        # timestamps are parsed with dateutil, which cost more CPU than posting the Event.
        response: aiohttp.ClientResponse = await self.core.create_namespaced_event(  # type: ignore[assignment]
            event.namespace,
            event.body(self.instance),  # type: ignore[arg-type]
            _preload_content=False,
        )
        await drain(response)


async def drain(response: aiohttp.ClientResponse) -> None:
    """Read a raw answer (``_preload_content=False``) to its end, so its connection goes back to
    the pool, and raise ``ApiException`` unless it is a 2xx."""
    try:
        body = await response.read()
        if not 200 <= response.status <= 299:
            error = ApiException(status=response.status, reason=response.reason)
            error.body = body  # the apiserver's Status, shown when the error is logged
            raise error
    finally:
        response.release()
