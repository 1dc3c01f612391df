"""Poison payloads put on the queue directly (a Go producer, no API): each fails alone with a clear
error and a callback; the good tasks around it run exactly once."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest
import redis.asyncio as aioredis

from sytq.queue import QueueClient
from sytq.strict_json import MAX_DEPTH
from sytq.tasks import MAX_PAYLOAD_BYTES
from tests.harness.llm_fixtures import (
    CallbackReceiver,
    PipelineEnv,
    StubLLMProcess,
    running_worker,
    wait_callback_state,
)

pytestmark = pytest.mark.slow  # end to end: seconds each; left out of `make unit`


def raw_payload(prompt: str, callback_url: str, metadata: str) -> bytes:
    """An llm:chat payload as another producer could write it (Python's json.dumps writes NaN too)."""
    messages = f'[{{"role":"user","content":"{prompt}"}}]'
    tail = f'"callback_url":"{callback_url}","metadata":{metadata}'
    return f'{{"model":"m","messages":{messages},{tail}}}'.encode()


POISON_METADATA = {
    "nan": ('{"x":NaN}', "x: NaN"),
    "infinity": ('{"x":{"y":[Infinity]}}', "x.y[0]: Infinity"),
    "overflow": ('{"x":-1e400}', "x: -Infinity"),
    "deep": ('{"x":' + "[" * 40 + "]" * 40 + "}", f"deeper than {MAX_DEPTH} levels"),
}


async def test_poison_payloads_fail_alone_and_neighbours_run_once(
    pipeline_env: PipelineEnv,
    redis_client: aioredis.Redis,
    stub_llm: StubLLMProcess,
    callback_receiver: CallbackReceiver,
) -> None:
    run = uuid.uuid4().hex[:8]
    hook = callback_receiver.url + "/hook"
    client = QueueClient(redis_client)
    good: dict[str, str] = {}
    poison: dict[str, str] = {}
    for i in range(30):
        if i % 8 == 3 and len(poison) < len(POISON_METADATA):
            name = list(POISON_METADATA)[len(poison)]
            task_id = f"poison-{name}-{run}"
            payload = raw_payload(f"poison {name} {run}", hook, POISON_METADATA[name][0])
            poison[task_id] = name
        else:
            task_id = f"good-{i}-{run}"
            payload = raw_payload(f"good {i} {run}", hook, f'{{"i":{i},"f":1.5}}')
            good[task_id] = f"good {i} {run}"
        await client.enqueue("llm:chat", payload, task_id=task_id, max_retry=3, retention=300)
    assert len(poison) == len(POISON_METADATA)

    async with running_worker(pipeline_env.settings, redis_client) as pipeline:
        rows = await asyncio.gather(
            *(wait_callback_state(pipeline.store, t, "delivered") for t in [*good, *poison])
        )
    by_id = {row.task_id: row for row in rows}
    for task_id, prompt in good.items():
        row = by_id[task_id]
        assert row.status == "succeeded" and row.attempts == 1 and row.metadata["f"] == 1.5
        assert stub_llm.calls_for(prompt) == 1
    for task_id, name in poison.items():
        row = by_id[task_id]
        assert row.status == "failed" and row.attempts == 1
        assert "invalid llm:chat payload" in (row.error or "")
        assert POISON_METADATA[name][1] in (row.error or "")
        assert stub_llm.calls_for(f"poison {name} {run}") == 0  # refused before any paid call
        [callback] = callback_receiver.for_task(task_id)
        body = json.loads(callback.body)
        assert body["status"] == "failed" and POISON_METADATA[name][1] in body["error"]


async def test_payload_too_big_for_one_row_fails_before_any_call(
    pipeline_env: PipelineEnv,
    redis_client: aioredis.Redis,
    stub_llm: StubLLMProcess,
    callback_receiver: CallbackReceiver,
) -> None:
    """17 messages of 1,000,000 characters: each within the payload's limits, together more than
    MariaDB's default max_allowed_packet (16 MiB) holds in the row's one statement."""
    tag = uuid.uuid4().hex
    turns = ",".join(f'{{"role":"user","content":"{tag}{"x" * (1_000_000 - len(tag))}"}}' for _ in range(17))
    hook = callback_receiver.url + "/hook"
    payload = f'{{"model":"m","messages":[{turns}],"callback_url":"{hook}"}}'.encode()
    client = QueueClient(redis_client)
    await client.enqueue("llm:chat", payload, task_id=f"huge-{tag}", max_retry=3, retention=300)
    await client.enqueue(
        "llm:chat", raw_payload(f"after {tag}", hook, "{}"), task_id=f"after-{tag}", max_retry=3
    )
    async with running_worker(pipeline_env.settings, redis_client) as pipeline:
        huge = await wait_callback_state(pipeline.store, f"huge-{tag}", "delivered")
        after = await wait_callback_state(pipeline.store, f"after-{tag}", "delivered")
    assert huge.status == "failed" and f"more than the {MAX_PAYLOAD_BYTES}" in (huge.error or "")
    assert after.status == "succeeded"
    assert stub_llm.calls_for(tag) == 1  # the neighbour's call only
