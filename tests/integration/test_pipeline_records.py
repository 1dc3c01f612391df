"""llm:process (the Go original's record mode) against a valuation_records table in MariaDB."""

from __future__ import annotations

import json
import uuid

import pymysql
import redis.asyncio as aioredis

from sytq.queue import Inspector, QueueClient
from sytq_cli.stub_llm import deterministic_content
from tests.harness.llm_fixtures import (
    CallbackReceiver,
    PipelineEnv,
    StubLLMProcess,
    running_worker,
    wait_callback_state,
    wait_final,
)
from tests.harness.services import MariaDBServer


def insert_record(
    mariadb: MariaDBServer, database: str, user: str, sys: str | None, callback: str | None
) -> int:
    conn = pymysql.connect(host="127.0.0.1", port=mariadb.port, user="root", database=database)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "INSERT INTO valuation_records (sys_message, user_message, callback_url) VALUES (%s, %s, %s)",
                (sys, user, callback),
            )
            record_id = int(cur.lastrowid)
        conn.commit()
        return record_id
    finally:
        conn.close()


def read_record(mariadb: MariaDBServer, database: str, record_id: int) -> dict[str, object]:
    conn = pymysql.connect(
        host="127.0.0.1", port=mariadb.port, user="root", database=database,
        cursorclass=pymysql.cursors.DictCursor,
    )
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT * FROM valuation_records WHERE id = %s", (record_id,))
            row = cur.fetchone()
            assert row is not None
            return dict(row)
    finally:
        conn.close()


def process_payload(record_id: int) -> bytes:
    return json.dumps({"table_name": "valuation_records", "id": record_id}).encode()


async def enqueue_process(redis: aioredis.Redis, payload: bytes, max_retry: int = 3) -> str:
    task_id = str(uuid.uuid4())
    client = QueueClient(redis)
    await client.enqueue("llm:process", payload, task_id=task_id, max_retry=max_retry, retention=300)
    return task_id


async def test_record_is_processed_like_the_original(
    pipeline_env: PipelineEnv,
    mariadb_server: MariaDBServer,
    redis_client: aioredis.Redis,
    stub_llm: StubLLMProcess,
    callback_receiver: CallbackReceiver,
) -> None:
    db = pipeline_env.record_database
    user = f"估值 {uuid.uuid4().hex}"
    record_id = insert_record(mariadb_server, db, user, "你是估值助手", callback_receiver.url + "/valuation")
    # The Go original's payload, byte for byte.
    payload = process_payload(record_id)
    async with running_worker(pipeline_env.settings, redis_client) as pipeline:
        task_id = await enqueue_process(redis_client, payload)
        stored = await wait_callback_state(pipeline.store, task_id, "delivered")

    expected = deterministic_content("deepseek-chat", f"你是估值助手\n{user}")
    row = read_record(mariadb_server, db, record_id)
    assert row["status"] == "已完成"
    assert row["report"] == expected
    assert row["current_task_node"] == "done"
    assert row["failed_times"] == 0
    assert stored.status == "succeeded" and stored.content == expected
    assert stored.metadata == {"table_name": "valuation_records", "id": record_id}
    body = json.loads(callback_receiver.wait_for(task_id).body)
    assert body["status"] == "succeeded" and body["result"]["content"] == expected
    assert body["metadata"] == {"table_name": "valuation_records", "id": record_id}


async def test_record_failures_are_counted_and_final_failure_marked(
    pipeline_env: PipelineEnv,
    mariadb_server: MariaDBServer,
    redis_client: aioredis.Redis,
    stub_llm: StubLLMProcess,
) -> None:
    db = pipeline_env.record_database
    flaky_user, broke_user = f"flaky {uuid.uuid4().hex}", f"broke {uuid.uuid4().hex}"
    flaky_id = insert_record(mariadb_server, db, flaky_user, None, None)
    broke_id = insert_record(mariadb_server, db, broke_user, None, None)
    stub_llm.configure(faults=[
        {"kind": "503", "times": 1, "match": flaky_user},
        {"kind": "402", "match": broke_user},
    ])
    async with running_worker(pipeline_env.settings, redis_client) as pipeline:
        flaky = await enqueue_process(redis_client, process_payload(flaky_id))
        broke = await enqueue_process(redis_client, process_payload(broke_id))
        assert (await wait_final(pipeline.store, flaky)).status == "succeeded"
        assert (await wait_final(pipeline.store, broke)).status == "failed"

    flaky_row = read_record(mariadb_server, db, flaky_id)
    assert flaky_row["status"] == "已完成" and flaky_row["failed_times"] == 1
    assert "HTTP 503" in str(flaky_row["failed_info"])
    broke_row = read_record(mariadb_server, db, broke_id)
    assert broke_row["status"] == "失败" and broke_row["failed_times"] == 1
    assert broke_row["current_task_node"] == "failed"
    assert "HTTP 402" in str(broke_row["failed_info"])
    assert stub_llm.calls_for(broke_user) == 1


async def test_tables_off_the_allowlist_and_missing_rows_are_refused(
    pipeline_env: PipelineEnv, redis_client: aioredis.Redis, stub_llm: StubLLMProcess
) -> None:
    async with running_worker(pipeline_env.settings, redis_client) as pipeline:
        other = await enqueue_process(redis_client, b'{"table_name": "users", "id": 1}')
        missing = await enqueue_process(redis_client, b'{"table_name": "valuation_records", "id": 999999}')
        injected = await enqueue_process(redis_client, b'{"table_name": "x; DROP TABLE y", "id": 1}')
        other_row = await wait_final(pipeline.store, other)
        missing_row = await wait_final(pipeline.store, missing)
        injected_row = await wait_final(pipeline.store, injected)
    assert other_row.status == "failed" and "not allowed" in (other_row.error or "")
    assert missing_row.status == "failed" and "no row with id 999999" in (missing_row.error or "")
    assert injected_row.status == "failed" and "invalid llm:process task" in (injected_row.error or "")
    inspector = Inspector(redis_client)
    for task_id in (other, missing, injected):
        assert (await inspector.get_task("default", task_id)).state == "archived"
    assert stub_llm.stats()["requests"] == 0
