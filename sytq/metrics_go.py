"""The Go original's Prometheus metrics (``syt_go_queue_*``), served beside ours when enabled.

Same names, label names, label values and histogram buckets as the original, so its dashboards and
alerts keep working. They are fed at the places that feed our own metrics (one increment or
observation more); while they are off (the default) every call here returns at once and
``/metrics`` shows none of them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from sytq.metrics import labelled

# Their own registry: a process serves them only when its settings ask for them.
GO_REGISTRY = CollectorRegistry(auto_describe=True)

# Go client's prometheus.DefBuckets and the original's ExponentialBuckets(0.1, 2, 10).
GO_DEFAULT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
GO_LLM_BUCKETS = tuple(0.1 * 2**n for n in range(10))

REQUESTS = Counter(
    "syt_go_queue_requests",
    "API requests (Go original's name)",
    ["method", "endpoint", "status"],
    registry=GO_REGISTRY,
)
REQUEST_DURATION = Histogram(
    "syt_go_queue_request_duration_seconds",
    "API request time (Go original's name)",
    ["method", "endpoint"],
    buckets=GO_DEFAULT_BUCKETS,
    registry=GO_REGISTRY,
)
TASKS = Counter(
    "syt_go_queue_tasks",
    "Task runs by outcome (Go original's name)",
    ["type", "status"],
    registry=GO_REGISTRY,
)
TASK_DURATION = Histogram(
    "syt_go_queue_task_duration_seconds",
    "Task run time (Go original's name)",
    ["type"],
    buckets=GO_DEFAULT_BUCKETS,
    registry=GO_REGISTRY,
)
DATABASE_QUERIES = Counter(
    "syt_go_queue_database_queries",
    "Record table queries (Go original's name)",
    ["operation", "status"],
    registry=GO_REGISTRY,
)
DATABASE_QUERY_DURATION = Histogram(
    "syt_go_queue_database_query_duration_seconds",
    "Record table query time (Go original's name)",
    ["operation"],
    buckets=GO_DEFAULT_BUCKETS,
    registry=GO_REGISTRY,
)
LLM_CALLS = Counter(
    "syt_go_queue_llm_api_calls",
    "Provider calls by outcome (Go original's name)",
    ["status"],
    registry=GO_REGISTRY,
)
LLM_DURATION = Histogram(
    "syt_go_queue_llm_api_duration_seconds",
    "Provider call time (Go original's name)",
    buckets=GO_LLM_BUCKETS,
    registry=GO_REGISTRY,
)
QUEUE_SIZE = Gauge(
    "syt_go_queue_size", "Tasks in a queue, every state (Go original's name)", ["queue"], registry=GO_REGISTRY
)
WORKERS = Gauge(
    "syt_go_queue_workers", "Task slots of this worker (Go original's name)", registry=GO_REGISTRY
)


class _Switch:
    on = False


_switch = _Switch()


def enable() -> None:
    """Start feeding the original's metrics in this process (off, every call below returns at once)."""
    _switch.on = True


def enabled() -> bool:
    return _switch.on


class _AsGoWritesThem(Collector):
    """The original's metrics without the ``_created`` samples Go's client never writes."""

    def collect(self) -> Iterator[Metric]:
        for family in GO_REGISTRY.collect():
            family.samples = [s for s in family.samples if not s.name.endswith("_created")]
            yield family


_SERVED = CollectorRegistry(auto_describe=False)
_SERVED.register(_AsGoWritesThem())


def exposition(go_compat: bool) -> bytes:
    """What /metrics answers: our metrics, and the original's after them when ``go_compat``."""
    ours = generate_latest()
    return ours + generate_latest(_SERVED) if go_compat else ours


# Our failure reasons as the original's task statuses (any other reason is a provider failure).
_TASK_STATUS_BY_REASON = {
    "invalid_payload": "unmarshal_error",
    "record_missing": "db_error",
    "record_error": "db_error",
    "record_status_error": "update_error",
    "record_result_error": "update_result_error",
    "row_refused": "db_error",
}

# Our provider call outcomes as the original's llm_api_calls statuses.
_LLM_STATUS_BY_OUTCOME = {
    "ok": "success",
    "timeout": "network_error",
    "connection": "network_error",
    "malformed_response": "decode_error",
    "empty_content": "empty_response",
}


def task_succeeded(task_type: str) -> None:
    if _switch.on:
        labelled(TASKS, task_type, "success").inc()


def task_failed(task_type: str, reason: str) -> None:
    if _switch.on:
        labelled(TASKS, task_type, _TASK_STATUS_BY_REASON.get(reason, "llm_error")).inc()


def task_ran(task_type: str, seconds: float) -> None:
    if _switch.on:
        labelled(TASK_DURATION, task_type).observe(seconds)


def llm_call(outcome: str, seconds: float) -> None:
    """One provider call; a call the circuit breaker refused never reaches here (the original counted
    none either)."""
    if _switch.on:
        labelled(LLM_CALLS, _LLM_STATUS_BY_OUTCOME.get(outcome, "status_error")).inc()
        LLM_DURATION.observe(seconds)


def database_query(operation: str, ok: bool, started: float) -> None:
    """A record table query (``get_record``, ``update_status``, ``update_record``) begun at ``started``
    (``time.monotonic()``)."""
    if _switch.on:
        labelled(DATABASE_QUERIES, operation, "success" if ok else "error").inc()
        labelled(DATABASE_QUERY_DURATION, operation).observe(time.monotonic() - started)


def request_done(method: str, endpoint: str, status: int, seconds: float) -> None:
    if _switch.on:
        labelled(REQUESTS, method, endpoint, str(status)).inc()
        labelled(REQUEST_DURATION, method, endpoint).observe(seconds)


def queue_size(queue: str, size: int) -> None:
    if _switch.on:
        QUEUE_SIZE.labels(queue).set(size)


def workers(count: int) -> None:
    if _switch.on:
        WORKERS.set(count)
