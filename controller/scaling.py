"""How many worker replicas a pool wants, KEDA/HPA style.

Up at once; down only to the highest recommendation seen during the stabilization window, so a
brief lull does not kill pods that are needed again a moment later.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field


@dataclass(frozen=True)
class PoolLimits:
    min_replicas: int
    max_replicas: int
    target_backlog_per_replica: int
    stabilization_seconds: float


def recommend(workload: int, limits: PoolLimits) -> int:
    """Replicas for ``workload`` tasks (pending + active), within min/max; 0 only when idle."""
    wanted = math.ceil(workload / limits.target_backlog_per_replica) if workload > 0 else 0
    return max(limits.min_replicas, min(limits.max_replicas, wanted))


@dataclass
class Stabilizer:
    """Remembers recent recommendations of one pool (monotonic seconds, replicas)."""

    history: deque[tuple[float, int]] = field(default_factory=deque)

    def decide(self, recommendation: int, current: int, now: float, window: float) -> int:
        if not self.history and recommendation < current:
            # Fresh start (e.g. controller restart): the current size counts as wanted just now.
            self.history.append((now, current))
        self.history.append((now, recommendation))
        while self.history and self.history[0][0] < now - window:
            self.history.popleft()
        if recommendation >= current:
            return recommendation
        return max(r for _, r in self.history)
