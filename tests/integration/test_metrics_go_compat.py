"""SYTQ_METRICS_GO_COMPAT: the Go original's syt_go_queue_* metrics on the API's and the worker's
/metrics, with its names, labels, buckets and the values one submit and one processed task give."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import httpx
import pytest
import redis.asyncio as aioredis
from prometheus_client.parser import text_string_to_metric_families

from sytq.queue import QueueClient
from sytq.storage import TaskStore
from tests.harness.api_fixtures import RunningApi
from tests.harness.llm_fixtures import PipelineEnv, StubLLMProcess, WorkerProcess, wait_final
from tests.harness.records import insert_record, read_record
from tests.harness.services import MariaDBServer, free_port, wait_for_port

pytestmark = pytest.mark.slow  # end to end: seconds each; left out of `make unit`

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
GO_DEFAULT_BUCKETS = [
    "0.005",
    "0.01",
    "0.025",
    "0.05",
    "0.1",
    "0.25",
    "0.5",
    "1.0",
    "2.5",
    "5.0",
    "10.0",
    "+Inf",
]
GO_LLM_BUCKETS = ["0.1", "0.2", "0.4", "0.8", "1.6", "3.2", "6.4", "12.8", "25.6", "51.2", "+Inf"]


def go_samples(text: str) -> Samples:
    """Every syt_go_queue_* sample of a scrape, by name and labels."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        if family.name.startswith("syt_go_queue_")
        for sample in family.samples
    }


def go_families(text: str) -> set[str]:
    return {
        family.name for family in text_string_to_metric_families(text) if family.name.startswith("syt_go_")
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def bucket_bounds(samples: Samples, name: str, **labels: str) -> list[str]:
    bounds = [
        dict(key)["le"]
        for metric, key in samples
        if metric == f"{name}_bucket" and {k: v for k, v in key if k != "le"} == labels
    ]
    return sorted(bounds, key=lambda le: float(le))


async def scrape_until(url: str, ready: Callable[[Samples], bool], within: float = 20.0) -> str:
    """Scrape until ``ready`` holds: a task's last counters are written just after its row."""
    deadline = time.monotonic() + within
    async with httpx.AsyncClient() as http:
        while True:
            text = (await http.get(url)).text
            samples = go_samples(text)
            if ready(samples):
                return text
            assert time.monotonic() < deadline, f"metrics not there within {within}s: {samples}"
            await asyncio.sleep(0.05)


async def test_go_original_metrics_after_a_submit_and_a_processed_task(
    start_api: Callable[..., RunningApi],
    pipeline_env: PipelineEnv,
    mariadb_server: MariaDBServer,
    redis_client: aioredis.Redis,
    stub_llm: StubLLMProcess,
) -> None:
    api = start_api(metrics_go_compat=True)
    record_id = insert_record(
        mariadb_server,
        pipeline_env.record_database,
        sys_message="sys",
        user_message=f"metrics {time.time_ns()}",
    )
    async with httpx.AsyncClient(base_url=api.url) as http:
        submitted = await http.post(
            "/api/tasks/llm", json={"table_name": "valuation_records", "id": record_id}
        )
        assert submitted.status_code == 200, submitted.text
        task_id = submitted.json()["data"]["task_id"]
        assert (await http.get(f"/api/tasks/{task_id}")).status_code == 200
        assert (await http.get("/nowhere")).status_code == 404
        api_samples = go_samples((await http.get("/metrics")).text)

    counted = "syt_go_queue_requests_total"
    assert value(api_samples, counted, method="POST", endpoint="/api/tasks/llm", status="200") == 1
    assert value(api_samples, counted, method="GET", endpoint="/api/tasks/:id", status="200") == 1
    assert value(api_samples, counted, method="GET", endpoint="unknown", status="404") == 1
    timed = "syt_go_queue_request_duration_seconds"
    assert value(api_samples, f"{timed}_count", method="POST", endpoint="/api/tasks/llm") == 1
    assert bucket_bounds(api_samples, timed, method="POST", endpoint="/api/tasks/llm") == GO_DEFAULT_BUCKETS

    # A task on a queue no worker serves: the original's queue size gauge counts it.
    await QueueClient(redis_client).enqueue("llm:process", b"{}", queue="parked")
    port = free_port()
    settings = pipeline_env.settings.model_copy(update={"metrics_port": port, "metrics_go_compat": True})
    worker = WorkerProcess(settings)
    store = TaskStore.from_url(settings.effective_database_url)
    try:
        await asyncio.to_thread(wait_for_port, port, 30.0, worker.proc)
        assert (await wait_final(store, task_id)).status == "succeeded"
        scraped = await scrape_until(
            f"http://127.0.0.1:{port}/metrics",
            lambda s: value(s, "syt_go_queue_task_duration_seconds_count", type="llm:process") == 1,
        )
    finally:
        assert worker.stop() == 0
        await store.close()

    samples = go_samples(scraped)
    assert read_record(mariadb_server, pipeline_env.record_database, record_id)["status"] == "已完成"
    assert value(samples, "syt_go_queue_tasks_total", type="llm:process", status="success") == 1
    assert (
        bucket_bounds(samples, "syt_go_queue_task_duration_seconds", type="llm:process") == GO_DEFAULT_BUCKETS
    )
    assert value(samples, "syt_go_queue_llm_api_calls_total", status="success") == 1
    assert value(samples, "syt_go_queue_llm_api_duration_seconds_count") == 1
    assert bucket_bounds(samples, "syt_go_queue_llm_api_duration_seconds") == GO_LLM_BUCKETS
    queries = "syt_go_queue_database_queries_total"
    assert value(samples, queries, operation="get_record", status="success") == 1
    assert value(samples, queries, operation="update_status", status="success") == 1
    assert value(samples, queries, operation="update_record", status="success") == 1
    query_time = "syt_go_queue_database_query_duration_seconds_count"
    assert [
        value(samples, query_time, operation=op) for op in ("get_record", "update_status", "update_record")
    ] == [
        1,
        1,
        1,
    ]
    assert value(samples, "syt_go_queue_size", queue="parked") == 1
    assert value(samples, "syt_go_queue_workers") == settings.worker_concurrency
    # The original's ten families and no other syt_go_queue_* name (counters are parsed without _total).
    assert go_families(scraped) == {
        "syt_go_queue_requests",
        "syt_go_queue_request_duration_seconds",
        "syt_go_queue_tasks",
        "syt_go_queue_task_duration_seconds",
        "syt_go_queue_database_queries",
        "syt_go_queue_database_query_duration_seconds",
        "syt_go_queue_llm_api_calls",
        "syt_go_queue_llm_api_duration_seconds",
        "syt_go_queue_size",
        "syt_go_queue_workers",
    }


async def test_go_original_metrics_are_off_by_default(start_api: Callable[..., RunningApi]) -> None:
    api = start_api()
    async with httpx.AsyncClient(base_url=api.url) as http:
        assert (await http.get("/healthz")).status_code == 200
        text = (await http.get("/metrics")).text
    assert "sytq_" in text and "syt_go_queue_" not in text
