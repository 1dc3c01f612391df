"""LLMTask end to end on the real apiserver: kubectl apply -> controller (as its ServiceAccount,
with the manifests' Role) -> queue -> local worker with the stub LLM -> status Succeeded."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import yaml

from tests.harness.operator_fixtures import NAMESPACE, OperatorEnv, wait_until

FINALIZER = "llm.syt.io/finalizer"
EXAMPLE = Path(__file__).resolve().parents[2] / "manifests" / "examples" / "llmtask.yaml"


def phase_of(env: OperatorEnv, name: str) -> str | None:
    phase: str | None = env.llmtask(name).get("status", {}).get("phase")
    return phase


def test_example_llmtask_succeeds_with_usage_preview_and_columns(operator_env: OperatorEnv) -> None:
    env = operator_env
    env.start_stub()
    env.start_worker()
    controller = env.start_controller()
    env.kubectl("apply", "-f", str(EXAMPLE))
    name = yaml.safe_load(EXAMPLE.read_text())["metadata"]["name"]

    wait_until(
        lambda: phase_of(env, name) == "Succeeded",
        30,
        f"example LLMTask Succeeded; controller log:\n{controller.log()}",
    )
    obj = env.llmtask(name)
    status = obj["status"]
    assert status["taskId"] == f"llmtask-{obj['metadata']['uid']}"
    assert status["attempts"] == 1
    assert status["usage"]["totalTokens"] > 0
    assert (
        status["usage"]["totalTokens"]
        == status["usage"]["promptTokens"] + status["usage"]["completionTokens"]
    )
    assert status["resultPreview"]
    assert len(status["resultPreview"].encode()) <= 1024
    assert status["resultRef"] == f"/api/v1/tasks/{status['taskId']}"
    assert status["startTime"] <= status["completionTime"]
    assert status["observedGeneration"] == obj["metadata"]["generation"]
    complete = next(c for c in status["conditions"] if c["type"] == "Complete")
    assert complete["status"] == "True" and complete["reason"] == "Succeeded"
    # The finalizer went on before the task was enqueued and stays until deletion (which then
    # also removes the task's retained copy from Redis).
    assert obj["metadata"]["finalizers"] == [FINALIZER]

    table = env.kubectl("get", "llmtasks", name).stdout.splitlines()
    assert table[0].split() == ["NAME", "PHASE", "MODEL", "ATTEMPTS", "TOKENS", "AGE"]
    row = table[1].split()
    assert row[:5] == [name, "Succeeded", "deepseek-chat", "1", str(status["usage"]["totalTokens"])]
    wide = env.kubectl("get", "llmtasks", name, "-o", "wide").stdout.splitlines()
    assert wide[0].split() == ["NAME", "PHASE", "MODEL", "ATTEMPTS", "TOKENS", "AGE", "TASK-ID", "QUEUE"]
    assert wide[1].split()[-2:] == [status["taskId"], "default"]

    reasons = env.events_once_posted(name, {"Succeeded"})
    # One Event per transition the status showed; Queued may be coalesced away when the worker is fast.
    assert "Succeeded" in reasons and reasons <= {"Enqueued", "Started", "Succeeded"}, reasons
    assert controller.alive, controller.log()


def test_delete_while_running_cancels_and_removes_the_task(operator_env: OperatorEnv) -> None:
    env = operator_env
    env.start_stub(latency="30")  # the call is still in flight when we delete
    env.start_worker()
    controller = env.start_controller()
    env.submit("slow", prompt="take your time")
    wait_until(lambda: phase_of(env, "slow") == "Running", 30, lambda: f"Running; log:\n{controller.log()}")
    wait_until(
        lambda: env.llmtask("slow")["metadata"].get("finalizers") == [FINALIZER],
        30,
        lambda: f"finalizer while Running; log:\n{controller.log()}",
    )
    task_id = env.llmtask("slow")["status"]["taskId"]
    env.kubectl("delete", "llmtask", "slow", "--wait=false")
    wait_until(lambda: not env.llmtasks(), 30, lambda: f"LLMTask gone; log:\n{controller.log()}")

    import redis

    client = redis.Redis.from_url(env.redis_url)
    assert not client.exists(f"asynq:{{default}}:t:{task_id}")
    for state in ("pending", "active", "retry", "archived", "scheduled", "completed"):
        key = f"asynq:{{default}}:{state}"
        members = client.lrange(key, 0, -1) if state in ("pending", "active") else client.zrange(key, 0, -1)
        assert task_id.encode() not in members, state
    assert "Cancelled" in env.events_once_posted("slow", {"Cancelled"})


def test_ttl_after_finished_deletes_the_llmtask_and_its_queue_task(operator_env: OperatorEnv) -> None:
    env = operator_env
    env.start_stub()
    env.start_worker()
    controller = env.start_controller()
    env.submit("short-lived", prompt="quick one", ttlSecondsAfterFinished=2)
    wait_until(
        lambda: phase_of(env, "short-lived") == "Succeeded",
        30,
        lambda: f"Succeeded; log:\n{controller.log()}",
    )
    task_id = env.llmtask("short-lived")["status"]["taskId"]
    wait_until(lambda: not env.llmtasks(), 30, lambda: f"deleted after TTL; log:\n{controller.log()}")
    import redis

    assert not redis.Redis.from_url(env.redis_url).exists(f"asynq:{{default}}:t:{task_id}")


def test_a_finished_llmtask_waiting_for_its_ttl_is_deleted_at_once(operator_env: OperatorEnv) -> None:
    env = operator_env
    env.start_stub()
    env.start_worker()
    controller = env.start_controller()
    env.submit("finished", prompt="done soon", ttlSecondsAfterFinished=86400)
    wait_until(
        lambda: phase_of(env, "finished") == "Succeeded", 30, lambda: f"Succeeded; log:\n{controller.log()}"
    )
    task_id = env.llmtask("finished")["status"]["taskId"]
    # Its mirror waits for the TTL; the deletion must not wait with it (kopf keeps the finalizer
    # until the daemon has exited).
    env.kubectl("delete", "llmtask", "finished", "--wait=false")
    wait_until(lambda: not env.llmtasks(), 30, lambda: f"LLMTask gone; log:\n{controller.log()}")
    import redis

    assert not redis.Redis.from_url(env.redis_url).exists(f"asynq:{{default}}:t:{task_id}")
    assert controller.alive, controller.log()


def peers(env: OperatorEnv) -> list[int]:
    """Priorities of the controllers announced in the KopfPeering object."""
    status = json.loads(env.kubectl("get", "kopfpeering", NAMESPACE, "-o", "json").stdout).get("status") or {}
    return [int(peer["priority"]) for peer in status.values() if isinstance(peer, dict)]


def test_two_controllers_one_active_and_the_standby_takes_over(operator_env: OperatorEnv) -> None:
    env = operator_env
    env.start_stub()
    env.start_worker()
    # Forget peers of earlier tests (a killed controller stays listed for the 20 s peering lifetime).
    env.kubectl("patch", "kopfpeering", NAMESPACE, "--type=merge", "-p", '{"status": null}')
    leader = env.start_controller(SYTQ_CONTROLLER_PRIORITY="200")
    wait_until(lambda: peers(env) == [200], 30, lambda: leader.log())
    standby = env.start_controller(SYTQ_CONTROLLER_PRIORITY="100")
    wait_until(lambda: sorted(peers(env)) == [100, 200], 30, lambda: standby.log())
    # Freeze the leader (its peering entry stays valid): a paused standby must not touch a new task.
    os.kill(leader.popen.pid, signal.SIGSTOP)
    try:
        env.submit("while-frozen", prompt="peering frozen")
        time.sleep(5)
        untouched = env.llmtask("while-frozen")
        assert "status" not in untouched and not untouched["metadata"].get("finalizers"), standby.log()
    finally:
        os.kill(leader.popen.pid, signal.SIGCONT)
    wait_until(lambda: phase_of(env, "while-frozen") == "Succeeded", 30, lambda: leader.log())

    leader.stop()  # graceful: kopf withdraws from the peering object at once
    env.submit("under-standby", prompt="peering under standby")
    wait_until(lambda: phase_of(env, "under-standby") == "Succeeded", 30, lambda: standby.log())
