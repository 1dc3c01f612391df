"""Heartbeat: extends the leases of every held task and writes asynq's server and worker info."""

from __future__ import annotations

import math
import time
from collections import defaultdict

from sytq.queue import redis_ops
from sytq.queue.config import ServerConfig
from sytq.queue.held import HeldTask, HeldTasks
from sytq.queue.proto import ServerInfoProto, WorkerInfoProto
from sytq.queue.redis_ops import Call, RedisOps, WorkersChange


class Heartbeat:
    def __init__(
        self,
        ops: RedisOps,
        config: ServerConfig,
        held: HeldTasks,
        server_id: str,
        server_key: str,
        workers_key: str,
    ) -> None:
        self._ops = ops
        self._config = config
        self._held = held
        self._server_id = server_id
        self._server_key = server_key
        self._workers_key = workers_key
        self._start_time = time.time()
        self.status = "new"
        self.tick = max(0.05, min(config.heartbeat_interval, config.lease_seconds / 3))
        # The workers hash as last written; each beat sends only what changed since (a WorkerInfo
        # carries the task's whole payload). Unknown after a failed beat: then the hash is replaced.
        self._written: dict[str, HeldTask] = {}
        self._replace = True

    async def beat(self) -> None:
        now = time.time()
        lease_until = time.monotonic() + self._config.lease_seconds
        by_queue: dict[str, list[str]] = defaultdict(list)
        # A lease that already ran out is not extended (as asynq): another server may own the task now.
        mono = time.monotonic()
        held_now = [(tid, h) for tid, h in self._held.by_id.items() if h.lease_valid_until > mono]
        for task_id, held in held_now:
            by_queue[held.queue].append(task_id)
        calls: list[Call] = [
            redis_ops.extend_leases_call(q, ids, math.ceil(now + self._config.lease_seconds))
            for q, ids in by_queue.items()
        ]
        state_at = len(calls)
        running = {tid: h for tid, h in self._held.by_id.items() if h.runner is not None}
        ttl = max(2, math.ceil(self.tick * 2))
        calls += redis_ops.write_server_state_calls(
            self._server_key,
            self._workers_key,
            ttl,
            math.ceil(now + ttl),
            self._server_info(len(running)),
            self._workers_change(running),
        )
        self._replace = True  # until Redis has confirmed the write
        replies = await self._ops.run(calls)
        self._written = running
        self._replace = not int(replies[state_at])
        for _, held in held_now:
            held.lease_valid_until = max(held.lease_valid_until, lease_until)

    def _workers_change(self, running: dict[str, HeldTask]) -> WorkersChange:
        if self._replace:
            written = list(running.items())
            removed: list[str] = []
        else:
            written = [(tid, h) for tid, h in running.items() if self._written.get(tid) is not h]
            removed = [tid for tid in self._written if tid not in running]
        infos = [(tid, self._worker_info(tid, h)) for tid, h in written]
        return WorkersChange(replace=self._replace, count=len(running), written=infos, removed=removed)

    def _server_info(self, active_workers: int) -> bytes:
        info = ServerInfoProto(
            host=self._config.host,
            pid=self._config.pid,
            server_id=self._server_id,
            concurrency=self._config.concurrency,
            queues=dict(self._config.queues),
            strict_priority=self._config.strict_priority,
            status=self.status,
            active_worker_count=active_workers,
        )
        info.start_time.FromNanoseconds(int(self._start_time * 1e9))
        data: bytes = info.SerializeToString()
        return data

    def _worker_info(self, task_id: str, held: HeldTask) -> bytes:
        info = WorkerInfoProto(
            host=self._config.host,
            pid=self._config.pid,
            server_id=self._server_id,
            task_id=task_id,
            task_type=held.msg.type,
            task_payload=held.msg.payload,
            queue=held.queue,
        )
        info.start_time.FromNanoseconds(int(held.started * 1e9))
        if held.deadline:
            info.deadline.FromSeconds(int(held.deadline))
        data: bytes = info.SerializeToString()
        return data
