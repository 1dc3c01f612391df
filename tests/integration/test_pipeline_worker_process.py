"""The `sytq worker` process itself: health, readiness and metrics endpoints, JSON logs with task ids."""

from __future__ import annotations

import asyncio
import json
import uuid

import httpx
import pytest
import redis.asyncio as aioredis

from sytq.storage import TaskStore
from tests.harness.llm_fixtures import PipelineEnv, StubLLMProcess, WorkerProcess, wait_final
from tests.harness.services import MariaDBServer, free_port, wait_for_port
from tests.integration.test_pipeline_chat import chat_payload, enqueue

pytestmark = pytest.mark.slow  # end to end: seconds each; left out of `make unit`


async def test_health_ready_and_metrics_endpoints(
    pipeline_env: PipelineEnv, redis_client: aioredis.Redis, stub_llm: StubLLMProcess
) -> None:
    port = free_port()
    settings = pipeline_env.settings.model_copy(update={"metrics_port": port})
    worker = WorkerProcess(settings)
    store = TaskStore.from_url(settings.effective_database_url)
    try:
        await asyncio.to_thread(wait_for_port, port, 30.0, worker.proc)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            assert (await http.get("/healthz")).status_code == 200
            ready = await http.get("/readyz")
            assert ready.status_code == 200, ready.text
            task_id = await enqueue(redis_client, chat_payload(f"metrics {uuid.uuid4().hex}"))
            await wait_final(store, task_id)
            metrics = (await http.get("/metrics")).text
            assert 'sytq_tasks_processed_total{outcome="succeeded",type="llm:chat"} 1.0' in metrics
            assert 'sytq_llm_request_seconds_count{model="deepseek-chat",outcome="ok"} 1.0' in metrics
            assert "sytq_llm_tokens_total" in metrics
            assert (await http.get("/nope")).status_code == 404
    finally:
        assert worker.stop() == 0
        await store.close()


async def test_readyz_reports_an_unreachable_database(
    pipeline_env: PipelineEnv, mariadb_server: MariaDBServer
) -> None:
    port = free_port()
    settings = pipeline_env.settings.model_copy(update={"metrics_port": port})
    worker = WorkerProcess(settings)
    try:
        await asyncio.to_thread(wait_for_port, port, 30.0, worker.proc)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=20) as http:
            assert (await http.get("/readyz")).status_code == 200
            mariadb_server.stop()
            try:
                not_ready = await http.get("/readyz")
                alive = await http.get("/healthz")
            finally:
                mariadb_server.start()
            again = await http.get("/readyz")
    finally:
        assert worker.stop() == 0
    assert not_ready.status_code == 503 and "database unreachable" in not_ready.text
    assert alive.status_code == 200
    assert again.status_code == 200


def test_json_log_lines_carry_the_task_id(capsys: object) -> None:
    import logging

    from sytq.log_setup import configure_logging, task_context

    configure_logging("INFO", json_lines=True)
    log = logging.getLogger("sytq.test")
    with task_context("task-123", "llm:chat"):
        log.info("inside")
    log.info("outside")
    err = capsys.readouterr().err  # type: ignore[attr-defined]
    lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    inside = next(entry for entry in lines if entry["msg"] == "inside")
    outside = next(entry for entry in lines if entry["msg"] == "outside")
    assert inside["task_id"] == "task-123" and inside["task_type"] == "llm:chat"
    assert "task_id" not in outside and outside["level"] == "info"
