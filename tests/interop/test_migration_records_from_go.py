"""Switching the Go original (API + worker) to ours: its own llm:process tasks, enqueued by a Go asynq
client exactly as its API did, some pending and some waiting for a retry, are finished by our worker
on its valuation_records DDL in MariaDB strict mode, with the rows and callbacks the original gives."""

from __future__ import annotations

import json
import subprocess
import time
from typing import Any

import redis.asyncio as aioredis

from sytq.callbacks import verify_signature
from sytq_cli.stub_llm import deterministic_content
from tests.harness.llm_fixtures import (
    CallbackReceiver,
    PipelineEnv,
    StubLLMProcess,
    running_worker,
    wait_callback_state,
    wait_final,
)
from tests.harness.records import insert_record, read_record
from tests.harness.services import MariaDBServer
from tests.interop.conftest import AsynqProbe
from tests.interop.probe_build import build_gomarshal

SYS = "你是估值助手"


def go_payload(record_id: int, table: str = "valuation_records") -> bytes:
    """json.Marshal(task.LLMPayload{TableName, ID}) in the original: no spaces, struct field order."""
    return f'{{"table_name":"{table}","id":{record_id}}}'.encode()


def go_task(record_id: int, table: str = "valuation_records") -> dict[str, Any]:
    # asynq.NewTask("llm:process", payload) with no options: queue default, MaxRetry 25, timeout 30 min.
    return {"type": "llm:process", "payload": go_payload(record_id, table)}


async def test_go_originals_tasks_finish_on_our_worker_with_the_rows_right(
    asynqprobe: AsynqProbe,
    pipeline_env: PipelineEnv,
    mariadb_server: MariaDBServer,
    redis_client: aioredis.Redis,
    stub_llm: StubLLMProcess,
    callback_receiver: CallbackReceiver,
) -> None:
    db = pipeline_env.record_database
    hook = callback_receiver.url + "/valuation"

    def row(user: str, **columns: Any) -> int:
        values = {
            "status": "待处理",
            "sys_message": SYS,
            "user_message": user,
            "report": "",
            "failed_times": 0,
            "failed_info": "",
            "progress": "",
            "progress_info": "",
            "current_task_node": 0,
            "callback_url": hook,
        } | columns
        return insert_record(mariadb_server, db, **values)

    # Tasks the Go worker already failed once: asynq holds them in the retry set with retried=1, and
    # the original's handler has left 失败 / failed_times 1 / failed_info on their rows.
    retry_users = [f"retry {i} {time.time_ns()}" for i in range(2)]
    retry_ids = [
        row(u, status="失败", failed_times=1, failed_info="LLM API request failed with status: 503")
        for u in retry_users
    ]
    retrying = await asynqprobe.enqueue_ok(*(go_task(i) for i in retry_ids))
    async with asynqprobe.serve("--fail", "always", "--retry-delay", "3s", "--check-interval", "1h") as go:
        await go.wait_for(lambda events: len(go.handled()) >= len(retrying))
        await go.stop()  # the Go worker is switched off gracefully

    # Pending tasks the Go API enqueued after its worker stopped.
    ok_user, flaky_user, broke_user = (f"{kind} {time.time_ns()}" for kind in ("ok", "flaky", "broke"))
    ok_id, flaky_id, broke_id = row(ok_user, current_task_node=2), row(flaky_user), row(broke_user)
    stub_llm.configure(
        faults=[{"kind": "503", "times": 1, "match": flaky_user}, {"kind": "402", "match": broke_user}]
    )
    pending = await asynqprobe.enqueue_ok(
        go_task(ok_id),
        go_task(flaky_id),
        go_task(broke_id),
        go_task(987_654_321),
        go_task(1, "valuation_archive"),
    )
    waiting = await asynqprobe.list("default", "retry")
    assert sorted(t["id"] for t in waiting) == sorted(t["id"] for t in retrying)
    assert all(t["retried"] == 1 for t in waiting)
    stats = await asynqprobe.stats("default")
    assert (stats["pending"], stats["retry"]) == (5, 2)
    assert all(t["max_retry"] == 25 and t["queue"] == "default" for t in retrying + pending)

    settings = pipeline_env.settings.model_copy(
        update={"record_tables": "valuation_records,valuation_archive"}
    )
    async with running_worker(settings, redis_client) as pipeline:
        final = {t["id"]: await wait_final(pipeline.store, t["id"], within=60) for t in pending + retrying}
        for task in (pending[0], pending[1], *retrying):
            await wait_callback_state(pipeline.store, task["id"], "delivered")

    ok_task, flaky_task, broke_task, missing_task, no_table_task = (t["id"] for t in pending)
    assert [final[t["id"]].status for t in pending] == [
        "succeeded",
        "succeeded",
        "failed",
        "failed",
        "failed",
    ]
    assert all(final[t["id"]].status == "succeeded" and final[t["id"]].attempts == 2 for t in retrying)

    ok = read_record(mariadb_server, db, ok_id)
    assert (ok["status"], ok["current_task_node"], ok["failed_times"]) == ("已完成", 3, 0)
    assert ok["report"] == deterministic_content("deepseek-chat", f"{SYS}\n{ok_user}")
    flaky = read_record(mariadb_server, db, flaky_id)
    assert (flaky["status"], flaky["current_task_node"], flaky["failed_times"]) == ("已完成", 1, 1)
    assert "HTTP 503" in flaky["failed_info"]
    broke = read_record(mariadb_server, db, broke_id)
    assert (broke["status"], broke["current_task_node"], broke["failed_times"]) == ("失败", 0, 1)
    assert "HTTP 402" in broke["failed_info"] and broke["report"] == ""
    for record_id, user in zip(retry_ids, retry_users, strict=True):
        done = read_record(mariadb_server, db, record_id)
        assert (done["status"], done["current_task_node"], done["failed_times"]) == ("已完成", 1, 1)
        assert done["report"] == deterministic_content("deepseek-chat", f"{SYS}\n{user}")
    assert "has no row with id 987654321" in (final[missing_task].error or "")
    assert "database error 1146" in (final[no_table_task].error or "")

    # The original's callback body, for every success and nothing else.
    for task_id in (ok_task, flaky_task, *(t["id"] for t in retrying)):
        body = json.loads(callback_receiver.wait_for(task_id).body)
        assert list(body) == ["result", "status", "timestamp"] and body["status"] == "success"
    assert json.loads(callback_receiver.wait_for(ok_task).body)["result"] == ok["report"]
    assert callback_receiver.for_task(broke_task) == []
    after = await asynqprobe.stats("default")
    assert (after["pending"], after["retry"], after["active"]) == (0, 0, 0)


def go_callback_bytes(result: str, timestamp: int) -> bytes:
    """What the original's sendCallback sent: Go's json.Marshal of its map, by a real Go program."""
    marshal = subprocess.run(
        [str(build_gomarshal()), str(timestamp)], input=result.encode(), capture_output=True, check=True
    )
    return marshal.stdout


async def test_record_callback_bytes_are_gos_json_marshal(
    asynqprobe: AsynqProbe,
    pipeline_env: PipelineEnv,
    mariadb_server: MariaDBServer,
    redis_client: aioredis.Redis,
    stub_llm: StubLLMProcess,
    callback_receiver: CallbackReceiver,
) -> None:
    # The stub's answer quotes the prompt, so the report carries HTML and a line separator.
    user = f"<script>&</script>\u2028行\u2029 {time.time_ns()}"
    record_id = insert_record(
        mariadb_server,
        pipeline_env.record_database,
        sys_message=SYS,
        user_message=user,
        callback_url=callback_receiver.url + "/valuation",
    )
    [task] = await asynqprobe.enqueue_ok(go_task(record_id))
    async with running_worker(pipeline_env.settings, redis_client) as pipeline:
        await wait_callback_state(pipeline.store, task["id"], "delivered")

    report = deterministic_content("deepseek-chat", f"{SYS}\n{user}")
    assert read_record(mariadb_server, pipeline_env.record_database, record_id)["report"] == report
    received = callback_receiver.wait_for(task["id"])
    timestamp = json.loads(received.body)["timestamp"]
    assert received.body == go_callback_bytes(report, timestamp)
    assert b"\\u003cscript\\u003e\\u0026" in received.body and b"\\u2028" in received.body
    # The signature covers exactly these bytes.
    secret = pipeline_env.settings.callback_secret
    assert secret is not None
    assert verify_signature(
        secret.get_secret_value(),
        received.body,
        received.headers["X-SYTQ-Signature"],
        received.headers["X-SYTQ-Timestamp"],
    )
