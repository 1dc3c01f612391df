"""asynq's default retry delay: sidekiq's formula, n^4 + 15 + rand(30) * (n + 1) seconds."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sytq.queue.task import Task

DEFAULT_MAX_RETRY = 25


def default_retry_delay(retried: int, error: BaseException, task: Task) -> float:
    n = max(0, retried)
    return float(n**4 + 15 + random.randrange(30) * (n + 1))
