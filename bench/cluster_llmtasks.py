"""1,000 LLMTasks through worker pods on the real cluster: time until all Succeeded, worker pods
used, status lag (worker done -> watch sees Succeeded) and CPU per task of every process."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

from bench.bench_operator import (
    EventClock,
    SucceededWatch,
    _cpu_by_process,
    _percentile,
    create_llmtasks,
)
from tests.harness.kube_cluster_fixtures import Release

PREFIX = "bench"  # SucceededWatch notes LLMTasks named bench-*
POOL_SELECTOR = "llm.syt.io/pool=default"


class PodSampler:
    """Polls the pool's Ready worker pods: the most at once and every pod that was ever Ready."""

    def __init__(self, release: Release) -> None:
        self.release = release
        self.most_ready = 0
        self.pods_seen: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PodSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            try:
                ready = self.release.ready_pods(POOL_SELECTOR)
            except Exception:  # a slow or failed kubectl is one missed sample, not a failed run
                continue
            self.most_ready = max(self.most_ready, len(ready))
            self.pods_seen.update(p["metadata"]["name"] for p in ready)


def _cpu_since(before: dict[int, tuple[str, float]]) -> dict[str, float]:
    """CPU seconds per kind of process since ``before``; processes started since count from zero
    (worker pods come and go during the run)."""
    totals: dict[str, float] = {}
    for pid, (label, cpu) in _cpu_by_process().items():
        totals[label] = totals.get(label, 0.0) + cpu - (before[pid][1] if pid in before else 0.0)
    return totals


async def run_llmtasks(release: Release, redis_url: str, n: int) -> dict[str, Any]:
    """Create ``n`` LLMTasks (32 at a time) in the release's namespace and wait for all Succeeded."""
    kubeconfig = release.cluster.kubeconfig
    clock = EventClock(redis_url)
    listener = asyncio.create_task(clock.run())
    await clock.ready.wait()
    watch = SucceededWatch(kubeconfig, n, PREFIX)
    watch.start()
    cpu0 = _cpu_by_process()
    start = time.time()
    with PodSampler(release) as pods:
        await create_llmtasks(kubeconfig, n, PREFIX, None)
        created = time.time()
        all_seen = await asyncio.to_thread(watch.wait, 900)
    cpu = _cpu_since(cpu0)
    listener.cancel()
    if not all_seen:
        raise RuntimeError(f"only {len(watch.seen)}/{n} LLMTasks Succeeded within 900 s")
    end = max(watch.seen.values())
    lags = [watch.seen[t] - clock.done[t] for t in watch.seen if t in clock.done]
    total_cpu = sum(v for v in cpu.values() if v > 0)
    done = [clock.done[t] for t in watch.seen if t in clock.done]
    return {
        "tasks": n,
        "create_seconds": round(created - start, 2),
        "all_succeeded_seconds": round(end - start, 2),
        "throughput_per_s": round(n / (end - start), 1),
        "first_done_after_s": round(min(done) - start, 2),
        "workers_done_within_s": round(max(done) - min(done), 2),  # first to last worker completion
        "most_ready_worker_pods": pods.most_ready,
        "worker_pods_used": len(pods.pods_seen),
        "lag_samples": len(lags),
        "lag_p50_ms": round(_percentile(lags, 50) * 1000, 1),
        "lag_p95_ms": round(_percentile(lags, 95) * 1000, 1),
        "lag_max_ms": round(max(lags) * 1000, 1),
        "cpu_ms_per_task": round(1000 * total_cpu / n, 2),
        "cpu_ms_per_task_by_process": {
            k: round(1000 * v / n, 2) for k, v in sorted(cpu.items(), key=lambda kv: -kv[1]) if v >= 0.05
        },
    }
