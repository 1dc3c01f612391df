"""Callbacks end to end: retried while the receiver is down, refused for unsafe targets."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest
import redis.asyncio as aioredis

from sytq.callbacks import verify_signature
from tests.harness.llm_fixtures import (
    CallbackReceiver,
    PipelineEnv,
    StubLLMProcess,
    running_worker,
    wait_callback_state,
    wait_row,
)
from tests.integration.test_pipeline_chat import chat_payload, enqueue


async def test_callback_is_delivered_after_the_receiver_comes_back(
    pipeline_env: PipelineEnv,
    redis_client: aioredis.Redis,
    stub_llm: StubLLMProcess,
    callback_receiver: CallbackReceiver,
) -> None:
    callback_receiver.down()
    async with running_worker(pipeline_env.settings, redis_client) as pipeline:
        task_id = await enqueue(redis_client, chat_payload("call me later", callback_receiver.url))
        pending = await wait_row(pipeline.store, task_id, lambda r: r.callback_attempts >= 2)
        assert pending.status == "succeeded" and pending.callback_status == "pending"
        assert "failed" in (pending.callback_error or "")
        callback_receiver.status = 503  # up but unhealthy: still not accepted
        callback_receiver.up()
        await wait_row(pipeline.store, task_id, lambda r: "HTTP 503" in (r.callback_error or ""))
        callback_receiver.status = 200
        record = await wait_callback_state(pipeline.store, task_id, "delivered")
    assert record.callback_attempts >= 3 and record.callback_error is None
    deliveries = callback_receiver.for_task(task_id)
    assert len(deliveries) >= 2 and all(d.headers["Idempotency-Key"] == task_id for d in deliveries)
    final = deliveries[-1]
    assert verify_signature(
        "test-secret", final.body, final.headers["X-SYTQ-Signature"], final.headers["X-SYTQ-Timestamp"]
    )
    assert json.loads(final.body)["status"] == "succeeded"


@pytest.mark.parametrize(
    "host",
    ["127.0.0.1", "10.1.2.3", "169.254.169.254", "localhost"],
)
async def test_unsafe_callback_target_is_refused_and_recorded(
    pipeline_env: PipelineEnv,
    redis_client: aioredis.Redis,
    stub_llm: StubLLMProcess,
    callback_receiver: CallbackReceiver,
    host: str,
) -> None:
    settings = pipeline_env.settings.model_copy(update={"callback_allow_nets": ""})
    url = f"http://{host}:{callback_receiver.port}/hook"
    async with running_worker(settings, redis_client) as pipeline:
        task_id = await enqueue(redis_client, chat_payload(f"ssrf {uuid.uuid4().hex}", url))
        record = await wait_callback_state(pipeline.store, task_id, "failed", within=20)
    assert record.status == "succeeded"
    assert "refused" in (record.callback_error or "")
    assert record.callback_attempts == 1
    await asyncio.sleep(0.2)
    assert callback_receiver.received == []
