"""llm:process (the Go original's record mode) on its own valuation_records DDL, MariaDB in strict mode."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Callable

import httpx
import pytest
import redis.asyncio as aioredis

from sytq.queue import Inspector, QueueClient, TaskInfo, TaskNotFoundError
from sytq_cli.stub_llm import deterministic_content
from tests.api.helpers import bearer, key_entry
from tests.harness.api_fixtures import RunningApi
from tests.harness.llm_fixtures import (
    CallbackReceiver,
    PipelineEnv,
    StubLLMProcess,
    running_worker,
    wait_callback_state,
    wait_final,
    wait_row,
)
from tests.harness.records import insert_record, read_record
from tests.harness.services import MariaDBServer

pytestmark = pytest.mark.slow  # end to end: seconds each; left out of `make unit`

SYS = "你是估值助手"


def process_payload(record_id: int, table: str = "valuation_records") -> bytes:
    # The Go original's payload, byte for byte (json.Marshal of its LLMPayload struct).
    return json.dumps({"table_name": table, "id": record_id}, separators=(",", ":")).encode()


async def enqueue_process(redis: aioredis.Redis, payload: bytes, max_retry: int = 3) -> str:
    task_id = str(uuid.uuid4())
    client = QueueClient(redis)
    await client.enqueue("llm:process", payload, task_id=task_id, max_retry=max_retry, retention=300)
    return task_id


async def wait_state(
    redis: aioredis.Redis, task_id: str, states: tuple[str, ...] = ("archived",), within: float = 30.0
) -> TaskInfo:
    inspector = Inspector(redis)
    deadline = time.monotonic() + within
    while (info := await inspector.get_task("default", task_id)).state not in states:
        assert time.monotonic() < deadline, f"task {task_id} not {states} after {within}s: {info}"
        await asyncio.sleep(0.05)
    return info


def warnings_for(caplog: pytest.LogCaptureFixture, task_id: str) -> list[str]:
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    return [line for line in lines if task_id in line]


async def test_success_leaves_the_row_and_sends_the_callback_as_the_original(
    pipeline_env: PipelineEnv,
    mariadb_server: MariaDBServer,
    redis_client: aioredis.Redis,
    stub_llm: StubLLMProcess,
    callback_receiver: CallbackReceiver,
) -> None:
    db = pipeline_env.record_database
    user = f"估值 {uuid.uuid4().hex}"
    record_id = insert_record(
        mariadb_server,
        db,
        status="待处理",
        sys_message=SYS,
        user_message=user,
        report="",
        failed_times=0,
        current_task_node=2,
        callback_url=callback_receiver.url + "/valuation",
    )
    started = int(time.time())
    async with running_worker(pipeline_env.settings, redis_client) as pipeline:
        task_id = await enqueue_process(redis_client, process_payload(record_id))
        stored = await wait_callback_state(pipeline.store, task_id, "delivered")

    expected = deterministic_content("deepseek-chat", f"{SYS}\n{user}")
    row = read_record(mariadb_server, db, record_id)
    assert row["status"] == "已完成"
    assert row["report"] == expected
    assert row["current_task_node"] == 3 and isinstance(row["current_task_node"], int)
    assert row["failed_times"] == 0 and row["failed_info"] is None
    assert stored.status == "succeeded" and stored.content == expected
    assert stored.metadata == {"table_name": "valuation_records", "id": record_id}

    sent = [r for r in stub_llm.stats()["recent"] if user in json.dumps(r, ensure_ascii=False)]
    assert sent == [
        {
            "model": "deepseek-chat",
            "max_tokens": 2000,
            "messages": [{"role": "system", "content": SYS}, {"role": "user", "content": user}],
        }
    ]

    callback = callback_receiver.wait_for(task_id)
    assert callback.path == "/valuation"
    assert callback.headers["Content-Type"] == "application/json"
    assert "X-SYTQ-Signature" in callback.headers  # ours, added; receivers that ignore it keep working
    body = json.loads(callback.body)
    assert list(body) == ["result", "status", "timestamp"]
    assert body["result"] == expected and body["status"] == "success"
    assert isinstance(body["timestamp"], int) and started <= body["timestamp"] <= int(time.time())


@pytest.mark.parametrize("final_only", [False, True], ids=["as-original", "failed-status-final-only"])
async def test_failed_attempt_then_success(
    pipeline_env: PipelineEnv,
    mariadb_server: MariaDBServer,
    redis_client: aioredis.Redis,
    stub_llm: StubLLMProcess,
    caplog: pytest.LogCaptureFixture,
    final_only: bool,
) -> None:
    db = pipeline_env.record_database
    user = f"flaky {uuid.uuid4().hex}"
    record_id = insert_record(mariadb_server, db, sys_message=SYS, user_message=user, current_task_node=0)
    # Retry-After holds the retry back long enough to read the row between the two attempts.
    stub_llm.configure(faults=[{"kind": "429", "retry_after": 3, "times": 1, "match": user}])
    settings = pipeline_env.settings.model_copy(update={"record_failed_status_final_only": final_only})
    caplog.set_level(logging.WARNING)
    async with running_worker(settings, redis_client) as pipeline:
        task_id = await enqueue_process(redis_client, process_payload(record_id))
        await wait_row(pipeline.store, task_id, lambda r: r.error is not None)
        between = read_record(mariadb_server, db, record_id)
        assert (await wait_final(pipeline.store, task_id)).status == "succeeded"

    assert between["failed_times"] == 1 and "HTTP 429" in str(between["failed_info"])
    assert between["status"] == ("处理中" if final_only else "失败")
    row = read_record(mariadb_server, db, record_id)
    assert row["status"] == "已完成" and row["current_task_node"] == 1
    assert row["failed_times"] == 1 and "HTTP 429" in str(row["failed_info"])
    assert any("attempt 1 failed, will retry" in line for line in warnings_for(caplog, task_id))


async def test_final_failure_marks_the_row_failed_and_sends_no_callback(
    pipeline_env: PipelineEnv,
    mariadb_server: MariaDBServer,
    redis_client: aioredis.Redis,
    stub_llm: StubLLMProcess,
    callback_receiver: CallbackReceiver,
    caplog: pytest.LogCaptureFixture,
) -> None:
    db = pipeline_env.record_database
    broke, tired = f"broke {uuid.uuid4().hex}", f"tired {uuid.uuid4().hex}"
    url = callback_receiver.url + "/valuation"
    broke_id = insert_record(mariadb_server, db, user_message=broke, current_task_node=5, callback_url=url)
    tired_id = insert_record(mariadb_server, db, user_message=tired, current_task_node=5, callback_url=url)
    stub_llm.configure(faults=[{"kind": "402", "match": broke}, {"kind": "503", "match": tired}])
    caplog.set_level(logging.WARNING)
    async with running_worker(pipeline_env.settings, redis_client) as pipeline:
        broke_task = await enqueue_process(redis_client, process_payload(broke_id))
        tired_task = await enqueue_process(redis_client, process_payload(tired_id), max_retry=1)
        inspector = Inspector(redis_client)
        for task_id in (broke_task, tired_task):
            await wait_state(redis_client, task_id)  # archived once the handler is done with it
            final = await pipeline.store.get(task_id)
            assert final is not None and final.status == "failed"
            assert final.callback_status is None  # nothing to deliver, nothing left pending
            with pytest.raises(TaskNotFoundError):
                await inspector.get_task(pipeline.settings.callback_queue, f"{task_id}:cb")

    broke_row = read_record(mariadb_server, db, broke_id)
    assert broke_row["status"] == "失败" and broke_row["failed_times"] == 1
    assert "HTTP 402" in str(broke_row["failed_info"])
    assert broke_row["current_task_node"] == 5 and broke_row["report"] is None
    assert stub_llm.calls_for(broke) == 1
    tired_row = read_record(mariadb_server, db, tired_id)
    assert tired_row["status"] == "失败" and tired_row["failed_times"] == 2
    assert tired_row["current_task_node"] == 5
    assert callback_receiver.for_task(broke_task) == [] and callback_receiver.for_task(tired_task) == []
    assert any("giving up" in line for line in warnings_for(caplog, tired_task))


async def test_missing_record_fails_at_once(
    pipeline_env: PipelineEnv,
    redis_client: aioredis.Redis,
    stub_llm: StubLLMProcess,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    async with running_worker(pipeline_env.settings, redis_client) as pipeline:
        task_id = await enqueue_process(redis_client, process_payload(999_999_999))
        row = await wait_final(pipeline.store, task_id)
        info = await wait_state(redis_client, task_id)
    assert row.status == "failed" and "valuation_records has no row with id 999999999" in (row.error or "")
    assert info.state == "archived" and info.retried == 0
    assert stub_llm.stats()["requests"] == 0
    assert any("giving up" in line and "no row" in line for line in warnings_for(caplog, task_id))


async def test_missing_table_fails_at_once_with_the_servers_error(
    pipeline_env: PipelineEnv,
    redis_client: aioredis.Redis,
    stub_llm: StubLLMProcess,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = pipeline_env.settings.model_copy(update={"record_tables": "valuation_records,valuation_gone"})
    caplog.set_level(logging.WARNING)
    async with running_worker(settings, redis_client) as pipeline:
        task_id = await enqueue_process(redis_client, process_payload(1, table="valuation_gone"))
        row = await wait_final(pipeline.store, task_id)
        info = await wait_state(redis_client, task_id)
    assert row.status == "failed"
    assert "valuation_gone row 1: database error 1146" in (row.error or "")
    assert info.state == "archived" and info.retried == 0
    assert stub_llm.stats()["requests"] == 0
    assert any("1146" in line for line in warnings_for(caplog, task_id))


async def test_a_value_the_column_refuses_fails_at_once_and_is_kept_in_failed_info(
    pipeline_env: PipelineEnv,
    mariadb_server: MariaDBServer,
    redis_client: aioredis.Redis,
    stub_llm: StubLLMProcess,
    callback_receiver: CallbackReceiver,
) -> None:
    db = pipeline_env.record_database
    # An older copy of the table whose report column is too narrow for an answer (strict mode: error 1406).
    mariadb_server.execute(
        "CREATE TABLE valuation_narrow (id BIGINT PRIMARY KEY, status VARCHAR(50), user_message TEXT, "
        "sys_message TEXT, report VARCHAR(8), failed_times INT DEFAULT 0, failed_info TEXT, "
        "current_task_node INT DEFAULT 0, callback_url VARCHAR(255))",
        database=db,
    )
    record_id = insert_record(
        mariadb_server,
        db,
        table="valuation_narrow",
        user_message=f"narrow {uuid.uuid4().hex}",
        callback_url=callback_receiver.url + "/valuation",
    )
    settings = pipeline_env.settings.model_copy(update={"record_tables": "valuation_narrow"})
    async with running_worker(settings, redis_client):
        task_id = await enqueue_process(redis_client, process_payload(record_id, table="valuation_narrow"))
        info = await wait_state(redis_client, task_id)
    assert info.retried == 0 and "database error 1406" in info.last_error
    row = read_record(mariadb_server, db, record_id, table="valuation_narrow")
    assert row["status"] == "失败" and row["failed_times"] == 1 and row["report"] is None
    assert "database error 1406" in str(row["failed_info"]) and row["current_task_node"] == 0
    assert callback_receiver.for_task(task_id) == []


async def test_tables_off_the_allowlist_and_invalid_payloads_are_refused(
    pipeline_env: PipelineEnv, redis_client: aioredis.Redis, stub_llm: StubLLMProcess
) -> None:
    async with running_worker(pipeline_env.settings, redis_client) as pipeline:
        other = await enqueue_process(redis_client, b'{"table_name": "users", "id": 1}')
        injected = await enqueue_process(redis_client, b'{"table_name": "x; DROP TABLE y", "id": 1}')
        for task_id in (other, injected):
            await wait_state(redis_client, task_id)
        other_row = await wait_final(pipeline.store, other)
        injected_row = await wait_final(pipeline.store, injected)
    assert other_row.status == "failed" and "not allowed" in (other_row.error or "")
    assert injected_row.status == "failed" and "invalid llm:process task" in (injected_row.error or "")
    assert stub_llm.stats()["requests"] == 0


async def test_a_redelivered_task_advances_the_node_once_and_calls_the_llm_once(
    pipeline_env: PipelineEnv,
    mariadb_server: MariaDBServer,
    redis_client: aioredis.Redis,
    stub_llm: StubLLMProcess,
) -> None:
    db = pipeline_env.record_database
    user = f"again {uuid.uuid4().hex}"
    record_id = insert_record(mariadb_server, db, user_message=user, current_task_node=7)
    payload = process_payload(record_id)
    async with running_worker(pipeline_env.settings, redis_client):
        task_id = await enqueue_process(redis_client, payload)
        await wait_state(redis_client, task_id, ("completed",))
        # The same task delivered again (e.g. its worker died before the acknowledgement).
        await Inspector(redis_client).delete_task("default", task_id)
        await QueueClient(redis_client).enqueue("llm:process", payload, task_id=task_id, retention=300)
        await wait_state(redis_client, task_id, ("completed",))
    row = read_record(mariadb_server, db, record_id)
    assert row["status"] == "已完成" and row["current_task_node"] == 8
    assert stub_llm.calls_for(user) == 1


async def test_a_finished_record_task_stays_readable_by_its_submitter_only(
    start_api: Callable[..., RunningApi],
    pipeline_env: PipelineEnv,  # with the stub provider
    mariadb_server: MariaDBServer,
    redis_client: aioredis.Redis,
) -> None:
    keys = ",".join(
        [
            key_entry("tenant-a", "a-secret", "submit|read"),
            key_entry("tenant-b", "b-secret", "submit|read"),
            key_entry("ops", "ops-secret", "admin"),
        ]
    )
    api = start_api(api_keys=keys, database_url=pipeline_env.settings.database_url)
    tenant_a, tenant_b, admin = bearer("a-secret"), bearer("b-secret"), bearer("ops-secret")
    db = pipeline_env.record_database
    record_id = insert_record(mariadb_server, db, sys_message=SYS, user_message="mine")
    ids = []
    async with httpx.AsyncClient(base_url=api.url) as http:
        async with running_worker(pipeline_env.settings, redis_client) as pipeline:
            for row in (record_id, 987_654_321):  # one done, one failed before it started (no such row)
                answer = await http.post(
                    "/api/tasks/llm", json={"table_name": "valuation_records", "id": row}, headers=tenant_a
                )
                assert answer.status_code == 200, answer.text
                ids.append(answer.json()["data"]["task_id"])
            finals = [await wait_final(pipeline.store, task_id) for task_id in ids]
        # Off the queue, only the task's row is left: the done one was deleted at its ack (as the
        # original's were; the worker has stopped, its acks written), the failed one is archived
        # until trimmed (deleted here).
        inspector = Inspector(redis_client)
        await inspector.delete_task("default", ids[1])
        for task_id in ids:
            with pytest.raises(TaskNotFoundError):
                await inspector.find_task(task_id)
        views = {
            (who, task_id): await http.get(f"/api/v1/tasks/{task_id}", headers=headers)
            for who, headers in (("a", tenant_a), ("b", tenant_b), ("admin", admin))
            for task_id in ids
        }
    assert [f.status for f in finals] == ["succeeded", "failed"]
    for task_id, status in zip(ids, ("succeeded", "failed"), strict=True):
        assert views["a", task_id].status_code == 200 and views["a", task_id].json()["status"] == status
        assert views["admin", task_id].status_code == 200
        assert views["b", task_id].status_code == 404
        assert views["b", task_id].json() == {"detail": f"task {task_id} not found"}
