"""Prometheus metric objects shared by the services (one registry: prometheus_client's default)."""

from __future__ import annotations

import functools
from typing import Any, TypeVar

from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.metrics import MetricWrapperBase

Metric = TypeVar("Metric", bound=MetricWrapperBase)

_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 20, 30, 60, 120, 300, 660)

TASKS_PROCESSED = Counter(
    "sytq_tasks_processed_total", "Task runs finished by the worker", ["type", "outcome"]
)
TASKS_FAILED = Counter("sytq_tasks_failed_total", "Task runs that failed, by reason", ["type", "reason"])
TASK_DURATION = Histogram(
    "sytq_task_duration_seconds", "Handler run time", ["type"], buckets=_LATENCY_BUCKETS
)
LLM_LATENCY = Histogram(
    "sytq_llm_request_seconds", "Provider call latency", ["model", "outcome"], buckets=_LATENCY_BUCKETS
)
LLM_TOKENS = Counter("sytq_llm_tokens_total", "Tokens reported by the provider", ["model", "kind"])
LLM_IN_FLIGHT = Gauge("sytq_llm_in_flight", "Provider calls in progress in this process")
LLM_LIMITER_WAIT = Histogram(
    "sytq_llm_limiter_wait_seconds",
    "Time spent waiting for a shared limiter slot",
    ["model"],
    buckets=(0.001, 0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 30, 60),
)
LLM_BREAKER_OPEN = Gauge("sytq_llm_breaker_open", "1 while the provider's circuit is open", ["provider"])
QUEUE_DEPTH = Gauge("sytq_queue_depth", "Tasks in a queue by state", ["queue", "state"])
CALLBACKS = Counter("sytq_callbacks_total", "Callback delivery attempts by outcome", ["outcome"])
RECORDS_PROCESSED = Counter(
    "sytq_records_processed_total", "llm:process records by outcome", ["table", "outcome"]
)


@functools.lru_cache(maxsize=4096)
def _child(metric: Any, values: tuple[str, ...]) -> Any:
    return metric.labels(*values)


def labelled(metric: Metric, *values: str) -> Metric:
    """``metric.labels(*values)`` (label values in declared order), cached: on the hot path the
    lookup (a lock, a tuple, a dict probe) runs several times per task."""
    child: Metric = _child(metric, values)
    return child


# The controller (llm.syt.io operator)
CONTROLLER_STATUS_LAG = Histogram(
    "sytq_controller_status_lag_seconds",
    "From a worker's task event to the LLMTask status patch that shows it, by the phase patched",
    ["phase"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
)
CONTROLLER_STATUS_PATCHES = Counter(
    "sytq_controller_status_patches_total", "LLMTask status patches by outcome (ok, gone, error)", ["outcome"]
)
CONTROLLER_EVENTS = Counter(
    "sytq_controller_events_total", "Kubernetes Events by outcome (posted, refused, dropped)", ["outcome"]
)
CONTROLLER_MIRRORS = Gauge("sytq_controller_mirrors", "Unfinished LLMTasks this controller is mirroring")
CONTROLLER_EVENT_BACKLOG = Gauge("sytq_controller_event_backlog", "Kubernetes Events waiting to be posted")
