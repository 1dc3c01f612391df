"""llm:chat end to end: real Redis, real MariaDB, the stub LLM and a callback receiver over loopback."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest
import redis.asyncio as aioredis

from sytq.callbacks import verify_signature
from sytq.queue import Inspector, QueueClient
from sytq.tasks import LLMChatPayload
from sytq_cli.stub_llm import deterministic_content
from tests.harness.llm_fixtures import (
    CallbackReceiver,
    PipelineEnv,
    StubLLMProcess,
    running_worker,
    wait_callback_state,
    wait_final,
)

pytestmark = pytest.mark.slow  # end to end: seconds each; left out of `make unit`


def chat_payload(prompt: str, callback_url: str | None = None, **extra: Any) -> bytes:
    payload = LLMChatPayload(
        model="deepseek-chat",
        messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": prompt}],  # type: ignore[list-item]
        callback_url=callback_url,
        metadata={"order": 7},
        **extra,
    )
    return payload.model_dump_json().encode()


async def enqueue(redis: aioredis.Redis, payload: bytes, max_retry: int = 5) -> str:
    task_id = str(uuid.uuid4())
    await QueueClient(redis).enqueue("llm:chat", payload, task_id=task_id, max_retry=max_retry, retention=300)
    return task_id


async def test_success_stores_row_writes_result_and_sends_signed_callback(
    pipeline_env: PipelineEnv,
    redis_client: aioredis.Redis,
    stub_llm: StubLLMProcess,
    callback_receiver: CallbackReceiver,
) -> None:
    prompt = f"hello {uuid.uuid4().hex}"
    async with running_worker(pipeline_env.settings, redis_client) as pipeline:
        task_id = await enqueue(redis_client, chat_payload(prompt, callback_receiver.url + "/hook"))
        record = await wait_callback_state(pipeline.store, task_id, "delivered")

    expected = deterministic_content("deepseek-chat", "be brief\n" + prompt)
    assert record.status == "succeeded"
    assert record.content == expected
    assert record.attempts == 1
    assert record.usage is not None and record.usage["total_tokens"] > 0
    assert record.finish_reason == "stop"
    assert record.llm_latency_ms is not None and record.started_at and record.finished_at
    assert record.metadata == {"order": 7}
    assert record.callback_attempts == 1

    info = await Inspector(redis_client).get_task("default", task_id)
    summary = json.loads(info.result or b"{}")
    assert summary["content_preview"] == expected[:1024]
    assert summary["usage"]["total_tokens"] == record.usage["total_tokens"]
    assert summary["model"] == "deepseek-chat"

    [callback] = callback_receiver.for_task(task_id)
    assert callback.path == "/hook"
    signature, timestamp = callback.headers["X-SYTQ-Signature"], callback.headers["X-SYTQ-Timestamp"]
    assert verify_signature("test-secret", callback.body, signature, timestamp)
    assert not verify_signature("other-secret", callback.body, signature, timestamp)
    assert callback.headers["Idempotency-Key"] == task_id
    body = json.loads(callback.body)
    assert body["task_id"] == task_id and body["status"] == "succeeded"
    assert body["result"]["content"] == expected
    assert body["usage"] == record.usage and body["error"] is None and body["metadata"] == {"order": 7}
    assert stub_llm.calls_for(prompt) == 1


RETRIED_FAULTS = [
    pytest.param({"kind": "429", "retry_after": 1}, id="429-retry-after"),
    pytest.param({"kind": "500"}, id="500"),
    pytest.param({"kind": "503"}, id="503"),
    pytest.param({"kind": "malformed"}, id="malformed-json"),
    pytest.param({"kind": "empty"}, id="empty-content"),
    pytest.param({"kind": "hang"}, id="hang-timeout"),
]


@pytest.mark.parametrize("fault", RETRIED_FAULTS)
async def test_transient_fault_is_retried_then_succeeds(
    pipeline_env: PipelineEnv, redis_client: aioredis.Redis, stub_llm: StubLLMProcess, fault: dict[str, Any]
) -> None:
    prompt = f"transient {fault['kind']} {uuid.uuid4().hex}"
    stub_llm.configure(faults=[{**fault, "times": 1, "match": prompt}])
    settings = pipeline_env.settings.model_copy(update={"llm_read_timeout": 1.0})
    async with running_worker(settings, redis_client) as pipeline:
        task_id = await enqueue(redis_client, chat_payload(prompt))
        record = await wait_final(pipeline.store, task_id)
    assert record.status == "succeeded", record.error
    assert record.attempts == 2
    assert record.content and record.content.startswith("stub answer")
    assert stub_llm.calls_for(prompt) == 2
    assert stub_llm.stats()["faults"] == {fault["kind"]: 1}


async def test_retry_after_is_honoured(
    pipeline_env: PipelineEnv, redis_client: aioredis.Redis, stub_llm: StubLLMProcess
) -> None:
    prompt = f"slow down {uuid.uuid4().hex}"
    stub_llm.configure(faults=[{"kind": "429", "retry_after": 3, "times": 1, "match": prompt}])
    async with running_worker(pipeline_env.settings, redis_client) as pipeline:
        task_id = await enqueue(redis_client, chat_payload(prompt))
        record = await wait_final(pipeline.store, task_id)
    assert record.status == "succeeded"
    assert record.started_at is not None and record.finished_at is not None
    # The base backoff is 0.2 s; only Retry-After explains a gap of 3 s or more.
    assert (record.finished_at - record.started_at).total_seconds() >= 2.9


async def test_keepalive_blank_lines_before_body_are_not_an_error(
    pipeline_env: PipelineEnv, redis_client: aioredis.Redis, stub_llm: StubLLMProcess
) -> None:
    prompt = f"keep alive {uuid.uuid4().hex}"
    stub_llm.configure(faults=[{"kind": "keepalive", "keepalive_lines": 5, "keepalive_interval": 0.1}])
    for stream in (False, True):
        settings = pipeline_env.settings.model_copy(update={"llm_stream": stream})
        async with running_worker(settings, redis_client) as pipeline:
            task_id = await enqueue(redis_client, chat_payload(f"{prompt} {stream}"))
            record = await wait_final(pipeline.store, task_id)
        assert record.status == "succeeded" and record.attempts == 1
        assert record.content == deterministic_content("deepseek-chat", f"be brief\n{prompt} {stream}")


@pytest.mark.parametrize("status", [400, 401, 402, 422])
async def test_client_errors_fail_fast_and_call_back_failed(
    pipeline_env: PipelineEnv,
    redis_client: aioredis.Redis,
    stub_llm: StubLLMProcess,
    callback_receiver: CallbackReceiver,
    status: int,
) -> None:
    prompt = f"fail fast {status} {uuid.uuid4().hex}"
    stub_llm.configure(faults=[{"kind": str(status), "match": prompt}])
    async with running_worker(pipeline_env.settings, redis_client) as pipeline:
        task_id = await enqueue(redis_client, chat_payload(prompt, callback_receiver.url), max_retry=10)
        record = await wait_callback_state(pipeline.store, task_id, "delivered")
    assert record.status == "failed"
    assert f"HTTP {status}" in (record.error or "")
    assert record.attempts == 1 and stub_llm.calls_for(prompt) == 1
    info = await Inspector(redis_client).get_task("default", task_id)
    assert info.state == "archived"
    body = json.loads(callback_receiver.wait_for(task_id).body)
    assert body["status"] == "failed" and f"HTTP {status}" in body["error"] and body["result"] is None


async def test_retries_exhausted_store_failure(
    pipeline_env: PipelineEnv, redis_client: aioredis.Redis, stub_llm: StubLLMProcess
) -> None:
    prompt = f"always 500 {uuid.uuid4().hex}"
    stub_llm.configure(faults=[{"kind": "500", "match": prompt}])
    async with running_worker(pipeline_env.settings, redis_client) as pipeline:
        task_id = await enqueue(redis_client, chat_payload(prompt), max_retry=2)
        record = await wait_final(pipeline.store, task_id)
    assert record.status == "failed" and "HTTP 500" in (record.error or "")
    assert record.attempts == 3 and stub_llm.calls_for(prompt) == 3


async def test_invalid_payload_fails_fast_with_clear_error(
    pipeline_env: PipelineEnv, redis_client: aioredis.Redis
) -> None:
    async with running_worker(pipeline_env.settings, redis_client) as pipeline:
        task_id = await enqueue(redis_client, b'{"model": "m", "messages": []}')
        record = await wait_final(pipeline.store, task_id)
    assert record.status == "failed"
    assert "invalid llm:chat payload" in (record.error or "")


async def test_redelivered_succeeded_task_does_not_call_provider_again(
    pipeline_env: PipelineEnv, redis_client: aioredis.Redis, stub_llm: StubLLMProcess
) -> None:
    prompt = f"once {uuid.uuid4().hex}"
    async with running_worker(pipeline_env.settings, redis_client) as pipeline:
        task_id = await enqueue(redis_client, chat_payload(prompt))
        first = await wait_final(pipeline.store, task_id)
        # Same task id delivered again (as after a lost ack): the stored row answers it.
        await Inspector(redis_client).delete_task("default", task_id)
        payload = chat_payload(prompt)
        await QueueClient(redis_client).enqueue("llm:chat", payload, task_id=task_id, retention=300)
        info = None
        for _ in range(200):
            info = await Inspector(redis_client).get_task("default", task_id)
            if info.state == "completed":
                break
            await asyncio.sleep(0.05)
        again = await pipeline.store.get(task_id)
    assert info is not None and info.state == "completed"
    assert again == first
    assert stub_llm.calls_for(prompt) == 1


async def test_a_call_outliving_the_task_deadline_is_stored_as_failed_and_called_back(
    pipeline_env: PipelineEnv,
    redis_client: aioredis.Redis,
    stub_llm: StubLLMProcess,
    callback_receiver: CallbackReceiver,
) -> None:
    """The provider call ends before the queue's own task timeout would cancel the handler, so the
    failed attempt is stored and the caller is told (a cancelled handler could do neither)."""
    prompt = f"outlives deadline {uuid.uuid4().hex}"
    stub_llm.configure(faults=[{"kind": "hang", "match": prompt}])
    settings = pipeline_env.settings.model_copy(update={"llm_read_timeout": 600.0})
    async with running_worker(settings, redis_client) as pipeline:
        task_id = str(uuid.uuid4())
        payload = chat_payload(prompt, callback_receiver.url)
        await QueueClient(redis_client).enqueue(
            "llm:chat", payload, task_id=task_id, max_retry=0, timeout=8, retention=300
        )
        record = await wait_callback_state(pipeline.store, task_id, "delivered")
    assert record.status == "failed" and "did not answer within" in (record.error or "")
    body = json.loads(callback_receiver.wait_for(task_id).body)
    assert body["status"] == "failed"
