"""Controller crashes and flaky LLM calls: every LLMTask still converges, nothing runs twice,
and the attempts reported match the calls the stub LLM really saw."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

import redis
import yaml

from tests.harness.operator_fixtures import OperatorEnv, llmtask_body, wait_until


def llmtask(name: str, prompt: str, **spec: Any) -> dict[str, Any]:
    return llmtask_body(name, labels={"batch": "resilience"}, prompt=prompt, **spec)


def create_many(env: OperatorEnv, objs: list[dict[str, Any]]) -> None:
    env.kubectl("create", "-f", "-", input=yaml.safe_dump_all(objs), timeout=300)


def phases(env: OperatorEnv) -> dict[str, str | None]:
    return {o["metadata"]["name"]: o.get("status", {}).get("phase") for o in env.llmtasks("batch=resilience")}


def stub_calls(env: OperatorEnv) -> dict[str, int]:
    with urllib.request.urlopen(f"{env.stub_url}/_stub/stats", timeout=10) as rsp:
        stats = json.load(rsp)
    by_prompt: dict[str, int] = stats["by_prompt"]
    return by_prompt


def llmtask_keys(env: OperatorEnv) -> list[bytes]:
    return list(redis.Redis.from_url(env.redis_url).scan_iter("asynq:{default}:t:llmtask-*", count=1000))


def test_controller_killed_mid_run_converges_without_double_enqueue(operator_env: OperatorEnv) -> None:
    env = operator_env
    count = 60
    # 1 s per call, 10 at a time: the run takes about 6 s, long enough to catch it half done
    env.start_stub(latency="1")
    env.start_worker(concurrency=10)
    # The replacement outranks the crashed one, as a restarted pod does half of the time; the other
    # half it waits for the dead peer's entry to expire (20 s), which adds nothing to this check.
    first = env.start_controller(SYTQ_CONTROLLER_PRIORITY="100")
    create_many(env, [llmtask(f"restart-{i}", f"restart prompt {i}") for i in range(count)])

    def some_progress() -> bool:
        seen = list(phases(env).values())
        return seen.count("Succeeded") >= 5 and any(p in ("Queued", "Running") for p in seen)

    wait_until(some_progress, 60, lambda: f"some tasks done, some not; log:\n{first.log()}")
    first.kill()
    second = env.start_controller(SYTQ_CONTROLLER_PRIORITY="200")
    wait_until(
        lambda: set(phases(env).values()) == {"Succeeded"},
        90,
        lambda: f"all Succeeded after restart; log:\n{second.log()}",
    )
    calls = stub_calls(env)
    assert len(llmtask_keys(env)) == count  # one queue task per LLMTask
    for i in range(count):
        assert calls.get(f"restart prompt {i}") == 1, (i, calls.get(f"restart prompt {i}"))
    for obj in env.llmtasks("batch=resilience"):
        assert obj["status"]["attempts"] == 1
        assert obj["status"]["taskId"] == f"llmtask-{obj['metadata']['uid']}"


def test_flaky_llm_every_task_ends_with_the_right_attempts(operator_env: OperatorEnv) -> None:
    env = operator_env
    count, max_retries = 200, 2
    env.start_stub(faults="500:0.5")
    env.start_worker(concurrency=50, SYTQ_LLM_BREAKER_FAILURES="1000000")
    controller = env.start_controller()
    create_many(
        env, [llmtask(f"flaky-{i}", f"flaky prompt {i}", maxRetries=max_retries) for i in range(count)]
    )

    wait_until(
        lambda: set(phases(env).values()) <= {"Succeeded", "Failed"} and len(phases(env)) == count,
        120,
        lambda: f"all final; log:\n{controller.log()}",
        interval=1.0,
    )
    calls = stub_calls(env)
    outcome = {"Succeeded": 0, "Failed": 0}
    for obj in env.llmtasks("batch=resilience"):
        status = obj["status"]
        prompt = obj["spec"]["prompt"]
        outcome[status["phase"]] += 1
        assert status["attempts"] == calls[prompt], (obj["metadata"]["name"], status, calls[prompt])
        if status["phase"] == "Failed":
            assert status["attempts"] == max_retries + 1
            assert status["error"]
            failed = next(c for c in status["conditions"] if c["type"] == "Failed")
            assert failed["reason"] == "BackoffLimitExceeded"
        else:
            assert 1 <= status["attempts"] <= max_retries + 1
            assert status["usage"]["totalTokens"] > 0
    # 50% faults, 3 attempts: about 1/8 fail. Both outcomes must really occur.
    assert outcome["Failed"] >= 5 and outcome["Succeeded"] >= 120, outcome
