"""Acknowledger: writes finished tasks' outcomes in one pipeline per flush, whatever piled up while
the previous flush was in flight."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict

from sytq.queue import redis_ops
from sytq.queue.held import HeldTasks
from sytq.queue.outcomes import Outcome, utc_day
from sytq.queue.periodic import REDIS_ERRORS
from sytq.queue.redis_ops import Call, RedisOps

log = logging.getLogger(__name__)
_ACK_CHUNK = 1000


class Acknowledger:
    def __init__(self, ops: RedisOps, held: HeldTasks, channel: str) -> None:
        self._ops = ops
        self._held = held
        self._channel = channel
        self._outcomes: list[Outcome] = []
        self._ready = asyncio.Event()
        self._flushing = False  # an acknowledgement round trip is in flight

    @property
    def busy(self) -> bool:
        """Outcomes wait to be written or a write is in flight."""
        return bool(self._outcomes) or self._flushing

    def post(self, outcome: Outcome) -> None:
        held = self._held.by_id.get(outcome.task_id)
        if held is not None:
            held.runner = None
        if outcome.kind == "forget":
            self._held.release([outcome.task_id])
            return
        self._outcomes.append(outcome)
        self._ready.set()

    def nudge(self) -> None:
        self._ready.set()

    async def run(self) -> None:
        while True:
            await self._ready.wait()
            self._ready.clear()
            batch, self._outcomes = self._outcomes, []
            if not batch:
                continue
            self._flushing = True
            try:
                await self._flush(batch)
            except REDIS_ERRORS as exc:
                log.warning("acknowledging %d tasks failed, retrying: %s", len(batch), exc)
                self._outcomes[:0] = batch
                self._flushing = False
                await asyncio.sleep(0.5)
                self._ready.set()
                continue
            self._flushing = False
            self._held.release([o.task_id for o in batch])

    async def _flush(self, batch: list[Outcome]) -> None:
        now = time.time()
        acks: dict[str, list[redis_ops.AckItem]] = defaultdict(list)
        calls: list[Call] = []
        for outcome in batch:
            if outcome.ack_item is not None:
                acks[outcome.queue].append(outcome.ack_item)
            elif outcome.call is not None:
                calls.append(outcome.call)
        for queue, items in acks.items():
            for start in range(0, len(items), _ACK_CHUNK):
                calls.append(
                    redis_ops.ack_batch_call(
                        queue, utc_day(now), self._channel, items[start : start + _ACK_CHUNK]
                    )
                )
        # Unavailability raises (the batch is retried). A call Redis rejects would fail the same way
        # forever: it is logged and dropped; its tasks keep their leases until recovery retries them.
        for call, reply in zip(calls, await self._ops.run(calls, raise_errors=False), strict=True):
            if isinstance(reply, Exception):
                log.error("Redis rejected %s: %s", call.script.name if call.script else call.args[0], reply)
