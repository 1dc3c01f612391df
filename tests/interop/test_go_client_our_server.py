"""Go asynq client enqueues -> our Server runs the tasks (issue 2, interop check 1)."""

from __future__ import annotations

import hashlib
import time
from typing import Any

import pytest
import redis.asyncio as aioredis

from sytq.queue import DuplicateTaskError, Inspector, QueueClient, RetryIn, TaskIdConflictError, TaskState
from tests.interop.conftest import AsynqProbe, eventually, our_server

# Bytes that are not valid UTF-8 and contain NUL: the payload must survive as bytes, not text.
BINARY = b'\x00\xff\xfe{"prompt": "h\xc3\xa9llo"}\x80'


class Recorder:
    """A handler that records each attempt and can fail the first one of chosen types."""

    def __init__(self, fail_first: frozenset[str] = frozenset(), result_prefix: bytes = b"ours:") -> None:
        self.attempts: list[dict[str, Any]] = []
        self.fail_first = fail_first
        self.result_prefix = result_prefix

    async def __call__(self, task: Any) -> None:
        self.attempts.append(
            {
                "id": task.id,
                "type": task.type,
                "queue": task.queue,
                "payload": task.payload,
                "retried": task.retried,
                "max_retry": task.max_retry,
                "headers": dict(task.headers or {}),
                "at": time.time(),
            }
        )
        if task.type in self.fail_first and task.retried == 0:
            raise RetryIn(0.1, f"first attempt of {task.id} fails on purpose")
        await task.write_result(self.result_prefix + task.payload)

    def ids(self) -> list[str]:
        return [a["id"] for a in self.attempts]

    def of(self, task_id: str) -> list[dict[str, Any]]:
        return [a for a in self.attempts if a["id"] == task_id]


async def test_go_enqueued_tasks_run_on_our_server_with_equal_payloads(
    asynqprobe: AsynqProbe, redis_client: aioredis.Redis
) -> None:
    go_tasks = await asynqprobe.enqueue_ok(
        {"type": "llm:process", "payload": b'{"table_name": "valuation_records", "id": 123}'},
        {"type": "llm:chat", "payload": BINARY, "queue": "critical", "headers": {"trace": "abc"}},
        {"type": "llm:chat", "payload": b"low one", "queue": "low"},
        {"type": "llm:chat", "payload": b"", "queue": "default"},
    )
    recorder = Recorder()
    handlers = {"llm:process": recorder, "llm:chat": recorder}
    async with our_server(redis_client, handlers, queues={"critical": 6, "default": 3, "low": 1}):
        await eventually(lambda: len(recorder.attempts) >= len(go_tasks))

    by_id = {a["id"]: a for a in recorder.attempts}
    assert sorted(by_id) == sorted(t["id"] for t in go_tasks)
    assert len(recorder.attempts) == len(go_tasks), "no task may run twice"
    for sent in go_tasks:
        ran = by_id[sent["id"]]
        assert (ran["type"], ran["queue"], ran["payload"]) == (sent["type"], sent["queue"], sent["payload"])
        assert ran["retried"] == 0 and ran["max_retry"] == 25  # asynq's default MaxRetry
    assert by_id[go_tasks[1]["id"]]["headers"] == {"trace": "abc"}
    # Done without retention: asynq deletes the task; every queue is empty afterwards.
    for queue in ("critical", "default", "low"):
        stats = await asynqprobe.stats(queue)
        assert (stats["size"], stats["processed"], stats["failed"]) == (
            0,
            sum(t["queue"] == queue for t in go_tasks),
            0,
        )


async def test_go_retry_options_are_honoured_and_retries_happen(
    asynqprobe: AsynqProbe, redis_client: aioredis.Redis
) -> None:
    (task,) = await asynqprobe.enqueue_ok(
        {"type": "flaky", "payload": b"again", "max_retry": 3, "retention": 3600}
    )
    recorder = Recorder(fail_first=frozenset({"flaky"}))
    async with our_server(redis_client, {"flaky": recorder}):
        await eventually(lambda: len(recorder.attempts) >= 2)
        seen = await eventually(lambda: _completed(asynqprobe, task["id"]))

    first, second = recorder.of(task["id"])
    assert (first["retried"], second["retried"]) == (0, 1)
    assert first["max_retry"] == second["max_retry"] == 3
    # The Go Inspector sees the retried count, the last error and our result.
    assert seen["retried"] == 1 and seen["max_retry"] == 3
    assert "fails on purpose" in seen["last_err"]
    assert seen["last_failed_at"] > 0
    assert seen["result"] == b"ours:again"
    stats = await asynqprobe.stats()
    assert (stats["processed"], stats["failed"], stats["completed"]) == (2, 1, 1)


async def _completed(asynqprobe: AsynqProbe, task_id: str, queue: str = "default") -> dict[str, Any] | None:
    lookup = (await asynqprobe.inspect(queue, [task_id]))["tasks"][task_id]
    task = lookup.get("task")
    return task if task and task["state"] == "completed" else None


async def test_go_scheduled_task_runs_on_our_server_only_when_due(
    asynqprobe: AsynqProbe, redis_client: aioredis.Redis
) -> None:
    enqueued_at = time.time()
    (task,) = await asynqprobe.enqueue_ok({"type": "later", "payload": b"tick", "process_in": 2})
    assert task["state"] == "scheduled"
    assert abs(task["next_process_at"] - (enqueued_at + 2)) <= 1.5
    recorder = Recorder()
    async with our_server(redis_client, {"later": recorder}):
        await eventually(lambda: recorder.attempts, within=15)
    (ran,) = recorder.attempts
    # asynq keeps whole seconds as the score: the task may be due up to 1 s before now + 2 s.
    assert ran["at"] >= task["next_process_at"] - 0.05
    assert ran["at"] >= enqueued_at + 0.9


async def test_go_unique_task_locks_and_our_done_releases_the_lock(
    asynqprobe: AsynqProbe, redis_client: aioredis.Redis
) -> None:
    spec = {"type": "once", "payload": b"same", "unique_for": 300}
    first, duplicate = await asynqprobe.enqueue(spec, spec)
    assert "task" in first and duplicate["kind"] == "duplicate_task"
    unique_key = "asynq:{default}:unique:once:" + hashlib.md5(b"same").hexdigest()
    assert await redis_client.get(unique_key) == first["task"]["id"].encode()
    # Our client must see Go's lock too.
    client = QueueClient(redis_client)
    with pytest.raises(DuplicateTaskError):
        await client.enqueue("once", b"same", unique_for=300)

    recorder = Recorder()
    async with our_server(redis_client, {"once": recorder}):
        await eventually(lambda: recorder.attempts)
        await eventually(lambda: _gone(redis_client, unique_key))
    # asynq releases the lock when the task succeeds: Go can enqueue the same unique task again.
    (again,) = await asynqprobe.enqueue(spec)
    assert "task" in again, again


async def _gone(redis_client: aioredis.Redis, key: str) -> bool:
    return not await redis_client.exists(key)


async def test_go_task_id_is_kept_and_conflicts_are_seen_by_both_clients(
    asynqprobe: AsynqProbe, redis_client: aioredis.Redis
) -> None:
    (task,) = await asynqprobe.enqueue_ok(
        {"type": "order", "payload": b"42", "task_id": "order-42", "queue": "orders"}
    )
    assert task["id"] == "order-42"
    (conflict,) = await asynqprobe.enqueue(
        {"type": "order", "payload": b"43", "task_id": "order-42", "queue": "orders"}
    )
    assert conflict["kind"] == "task_id_conflict"
    client = QueueClient(redis_client)
    with pytest.raises(TaskIdConflictError):
        await client.enqueue("order", b"44", queue="orders", task_id="order-42")

    recorder = Recorder()
    async with our_server(redis_client, {"order": recorder}, queues={"orders": 1}):
        await eventually(lambda: recorder.attempts)
    assert recorder.ids() == ["order-42"]
    assert recorder.attempts[0]["payload"] == b"42"


async def test_our_results_are_visible_to_go_inspector_and_go_results_to_ours(
    asynqprobe: AsynqProbe, redis_client: aioredis.Redis
) -> None:
    # One at a time: a server given a type it has no handler for fails it, in asynq and in ours.
    (ours_run,) = await asynqprobe.enqueue_ok({"type": "by:ours", "payload": BINARY, "retention": 3600})
    recorder = Recorder()
    started = time.time()
    async with our_server(redis_client, {"by:ours": recorder}):
        await eventually(lambda: _completed(asynqprobe, ours_run["id"]))
    (go_run,) = await asynqprobe.enqueue_ok({"type": "by:go", "payload": b"go payload", "retention": 3600})
    async with asynqprobe.serve("--types", "by:go", "--count", "1", "--result-prefix", "go:") as go:
        await go.wait_for(lambda events: any(e["event"] == "stopped" for e in events))

    seen_by_go = await asynqprobe.task("default", ours_run["id"])
    assert seen_by_go["state"] == "completed"
    assert seen_by_go["result"] == b"ours:" + BINARY
    assert started - 1 <= seen_by_go["completed_at"] <= time.time() + 1
    assert seen_by_go["retention"] == 3600

    inspector = Inspector(redis_client)
    seen_by_us = await inspector.get_task("default", go_run["id"])
    assert seen_by_us.state == TaskState.COMPLETED
    assert seen_by_us.result == b"go:go payload"
    assert seen_by_us.payload == b"go payload"
    assert seen_by_us.completed_at is not None


async def test_go_task_of_a_type_we_do_not_handle_fails_as_in_asynq(
    asynqprobe: AsynqProbe, redis_client: aioredis.Redis
) -> None:
    (task,) = await asynqprobe.enqueue_ok({"type": "nobody:handles", "payload": b"?", "max_retry": 0})
    async with our_server(redis_client, {"llm:chat": Recorder()}):
        seen = await eventually(lambda: _archived(asynqprobe, task["id"]))
    # asynq's ServeMux answers `handler not found for task "<type>"`; nothing is lost, the task is archived.
    assert 'handler not found for task "nobody:handles"' in seen["last_err"], seen["last_err"]
    assert seen["payload"] == b"?"


async def _archived(asynqprobe: AsynqProbe, task_id: str) -> dict[str, Any] | None:
    task = await asynqprobe.task("default", task_id)
    return task if task["state"] == "archived" else None
