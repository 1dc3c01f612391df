"""Server configuration."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from sytq.queue.retry import default_retry_delay
from sytq.queue.task import Task

RetryDelay = Callable[[int, BaseException, Task], float]


@dataclass
class ServerConfig:
    queues: Mapping[str, int] = field(default_factory=lambda: {"default": 1})
    strict_priority: bool = False
    concurrency: int = 100
    shutdown_timeout: float = 8.0
    lease_seconds: float = 30.0
    retry_delay: RetryDelay = default_retry_delay
    publish_events: bool = False
    server_name: str = field(default_factory=lambda: f"sytq-{os.getpid()}")  # logs; asynq's info has no name
    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)
    # Throughput and timing knobs beyond asynq's options.
    fetch_batch: int = 256  # most tasks one dequeue script moves to active
    idle_poll_max: float = 0.25  # longest sleep between dequeues while all queues are empty
    heartbeat_interval: float = 5.0  # asynq's; lease extension runs at least 3 times per lease
    forward_interval: float = 1.0
    recover_interval: float = 5.0
    lease_grace: float = 5.0  # an expired lease is recovered this much later (clock skew between hosts)
    janitor_interval: float = 8.0
    cancelled_tasks_archive: bool = True  # asynq retries a cancelled task; we archive it (see docs/queue.md)

    def validate(self) -> None:
        if not self.queues:
            raise ValueError("ServerConfig.queues names no queue")
        for name, weight in self.queues.items():
            if not name or weight < 1:
                raise ValueError(f"queue {name!r}: weight must be >= 1, got {weight}")
        if self.concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        if self.lease_seconds < 1:
            raise ValueError("lease_seconds must be >= 1")
        if not 1 <= self.fetch_batch <= 2000:
            raise ValueError("fetch_batch must be within 1..2000")
