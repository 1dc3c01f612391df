"""Issue 12, point 7: an LLMTask holds its finalizer from the moment it is dispatched, so deleting it
right after creation never leaves its queue task behind; and a queue task lost with a Redis flush is
enqueued again from the LLMTask's spec (same task id) instead of the LLMTask failing."""

from __future__ import annotations

import json

import redis

from sytq.k8s_resources import LLMTASK_FINALIZER
from tests.harness.operator_fixtures import OperatorEnv, llmtask_body, wait_until


def create(env: OperatorEnv, name: str, **spec: str) -> str:
    """Create the LLMTask; its queue task id."""
    out = env.kubectl("create", "-o", "json", "-f", "-", input=json.dumps(llmtask_body(name, **spec))).stdout
    return f"llmtask-{json.loads(out)['metadata']['uid']}"


def phase(env: OperatorEnv, name: str) -> str | None:
    found: str | None = env.llmtask(name).get("status", {}).get("phase")
    return found


def queue_task_exists(env: OperatorEnv, task_id: str) -> bool:
    return bool(redis.Redis.from_url(env.redis_url).exists(f"asynq:{{default}}:t:{task_id}"))


def test_an_llmtask_deleted_right_after_creation_leaves_no_queue_task(operator_env: OperatorEnv) -> None:
    env = operator_env
    env.start_stub(latency="30")  # a task that got to run would still be running
    env.start_worker()
    controller = env.start_controller()
    # at once, before the controller has seen it
    early = create(env, "deleted-at-once", prompt="never mind")
    env.kubectl("delete", "llmtask", "deleted-at-once", "--wait=false")
    # as soon as it is dispatched: the finalizer is on before the task is enqueued
    dispatched = create(env, "deleted-at-dispatch", prompt="never mind either")
    wait_until(
        lambda: env.llmtask("deleted-at-dispatch")["metadata"].get("finalizers") == [LLMTASK_FINALIZER],
        30,
        controller.log,
    )
    env.kubectl("delete", "llmtask", "deleted-at-dispatch", "--wait=false")
    # A task the worker took already is cancelled, and ``release`` retries each second until the
    # worker has stopped it: under the whole suite's load that once took longer than 60 s.
    wait_until(lambda: not env.llmtasks(), 120, lambda: f"LLMTasks gone; log:\n{controller.log()}")
    assert "Cancelled" in env.events_once_posted("deleted-at-dispatch", {"Cancelled"})
    # Anything still in flight for the deleted tasks lands long before a later task is dispatched.
    create(env, "after", prompt="later")
    wait_until(lambda: phase(env, "after") in ("Queued", "Running"), 30, controller.log)
    assert not queue_task_exists(env, early) and not queue_task_exists(env, dispatched)


def test_a_flushed_redis_gets_the_unfinished_llmtask_enqueued_again(operator_env: OperatorEnv) -> None:
    env = operator_env
    controller = env.start_controller()  # no worker yet: the task waits in the queue
    task_id = create(env, "survivor", prompt="still wanted")
    wait_until(lambda: phase(env, "survivor") == "Queued", 30, controller.log)
    assert queue_task_exists(env, task_id)

    redis.Redis.from_url(env.redis_url).flushall()
    wait_until(lambda: queue_task_exists(env, task_id), 30, lambda: f"enqueued again:\n{controller.log()}")
    wait_until(lambda: "Requeued" in env.event_reasons("survivor"), 30, controller.log)
    assert env.llmtask("survivor")["status"]["phase"] == "Queued"

    env.start_stub()
    env.start_worker()
    wait_until(lambda: env.llmtask("survivor")["status"]["phase"] == "Succeeded", 30, controller.log)
    status = env.llmtask("survivor")["status"]
    assert status["taskId"] == task_id and status["attempts"] == 1 and status["resultPreview"]
    assert "Failed" not in env.event_reasons("survivor")
