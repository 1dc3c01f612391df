"""Recoverer: tasks whose lease expired (their server died) are retried or archived, as asynq does."""

from __future__ import annotations

import logging
import time

from sytq.queue import redis_ops
from sytq.queue.codec import CorruptTaskError, TaskMessage, as_text
from sytq.queue.config import ServerConfig
from sytq.queue.held import HeldTasks
from sytq.queue.outcomes import Outcomes
from sytq.queue.redis_ops import Call, RedisOps

log = logging.getLogger(__name__)

LEASE_EXPIRED_ERROR = "asynq: task lease expired"


class Recoverer:
    def __init__(self, ops: RedisOps, config: ServerConfig, held: HeldTasks, outcomes: Outcomes) -> None:
        self._ops = ops
        self._config = config
        self._queues = list(config.queues)
        self._held = held
        self._outcomes = outcomes

    async def recover_expired(self) -> None:
        now = time.time()
        cutoff = int(now - self._config.lease_grace)
        found = await self._ops.run([redis_ops.list_lease_expired_call(q, cutoff) for q in self._queues])
        calls: list[Call] = []
        for queue, rows in zip(self._queues, found, strict=True):
            for i in range(0, len(rows), 2):
                task_id, raw = as_text(rows[i]), rows[i + 1]
                if task_id in self._held.by_id:
                    continue  # ours; the watchdog cancels it if the lease really ran out
                calls.append(self._recovery_call(queue, task_id, raw, now))
        if calls:
            log.info("recovering %d tasks whose lease expired", len(calls))
            await self._ops.run(calls, raise_errors=False)

    def _recovery_call(self, queue: str, task_id: str, raw: object, now: float) -> Call:
        if not isinstance(raw, bytes):
            return redis_ops.drop_active_call(queue, task_id)
        try:
            msg = TaskMessage.decode(raw)
        except CorruptTaskError as exc:
            return self._outcomes.quarantine(queue, task_id, raw, exc, now)
        task = self._outcomes.task_for(queue, task_id, msg, 0)
        error = RuntimeError(LEASE_EXPIRED_ERROR)
        return self._outcomes.failure(queue, task_id, msg, error, task, now)[1]
