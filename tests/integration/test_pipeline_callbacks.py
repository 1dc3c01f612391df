"""Callbacks end to end: retried while the receiver is down, refused for unsafe targets."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import pytest
import redis.asyncio as aioredis

from sytq.callbacks import verify_signature
from tests.harness.hostile_receivers import HostileReceiver
from tests.harness.llm_fixtures import (
    CallbackReceiver,
    PipelineEnv,
    StubLLMProcess,
    running_worker,
    wait_callback_state,
    wait_row,
)
from tests.harness.queue_fixtures import wait_until
from tests.integration.test_pipeline_chat import chat_payload, enqueue
from worker.pipeline import Pipeline

pytestmark = pytest.mark.slow  # end to end: seconds each; left out of `make unit`


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


async def test_slow_receivers_hold_only_callback_slots_while_llm_tasks_keep_flowing(
    pipeline_env: PipelineEnv, redis_client: aioredis.Redis, stub_llm: StubLLMProcess
) -> None:
    """8 tasks whose receiver drips one byte a second: their callbacks take the 2 callback slots,
    each attempt cut at its 6 s deadline, and 40 LLM tasks enqueued meanwhile finish as fast as
    with no callbacks at all (with callbacks on the user's queue, all 8 task slots would have been
    held until the deadline). Once the receiver recovers, the timed-out callback is retried and
    delivered, as before."""
    settings = pipeline_env.settings.model_copy(
        update={"worker_concurrency": 4, "callback_concurrency": 2, "callback_timeout_seconds": 6.0}
    )
    dripper = HostileReceiver("drip", interval=1.0)
    try:
        async with running_worker(settings, redis_client) as pipeline:
            baseline = await _time_to_finish(pipeline, redis_client, "baseline")
            hostile = [await enqueue(redis_client, chat_payload(f"drip {i}", dripper.url)) for i in range(8)]
            await wait_until(lambda: dripper.open_connections == 2)
            meanwhile = await _time_to_finish(pipeline, redis_client, "meanwhile")
            print(f"40 LLM tasks: {baseline:.2f}s alone, {meanwhile:.2f}s beside the slow receivers")
            assert meanwhile < max(3 * baseline, 3.0) and meanwhile < 6.0
            cut = await wait_row(pipeline.store, hostile[0], lambda r: "timed out" in str(r.callback_error))
            assert (cut.status, cut.callback_status, cut.callback_attempts) == ("succeeded", "pending", 1)
            dripper.mode = "ok"
            delivered = await wait_callback_state(pipeline.store, hostile[0], "delivered")
        assert delivered.callback_attempts >= 2 and delivered.callback_error is None
        assert dripper.peak_open_connections == 2  # never more than the callback slots
    finally:
        dripper.close()


async def _time_to_finish(pipeline: Pipeline, redis: aioredis.Redis, tag: str) -> float:
    started = time.monotonic()
    ids = [await enqueue(redis, chat_payload(f"{tag} {i} {uuid.uuid4().hex}")) for i in range(40)]
    for task_id in ids:
        record = await wait_row(pipeline.store, task_id, lambda r: r.finished, within=30)
        assert record.status == "succeeded"
    return time.monotonic() - started
