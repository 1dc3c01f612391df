"""The worker behind a forward proxy (Debian's tinyproxy on loopback): provider calls through the
proxy named by HTTP_PROXY, the callback through its own proxy setting, NO_PROXY honoured."""

from __future__ import annotations

import uuid

import pytest
import redis.asyncio as aioredis

from tests.harness.llm_fixtures import (
    CallbackReceiver,
    PipelineEnv,
    StubLLMProcess,
    running_worker,
    wait_callback_state,
    wait_final,
)
from tests.harness.proxy_fixtures import TinyProxy, tinyproxy
from tests.integration.test_pipeline_chat import chat_payload, enqueue

pytestmark = pytest.mark.slow  # end to end: seconds each; left out of `make unit`

__all__ = ["tinyproxy"]


async def test_provider_calls_follow_http_proxy_and_callbacks_their_own_proxy(
    pipeline_env: PipelineEnv,
    redis_client: aioredis.Redis,
    stub_llm: StubLLMProcess,
    callback_receiver: CallbackReceiver,
    tinyproxy: TinyProxy,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTP_PROXY", tinyproxy.url)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    settings = pipeline_env.settings.model_copy(update={"callback_proxy": tinyproxy.url})
    async with running_worker(settings, redis_client) as pipeline:
        assert pipeline.llm.proxy is not None and pipeline.llm.proxy.url == tinyproxy.url
        payload = chat_payload(f"proxied {uuid.uuid4().hex}", callback_receiver.url)
        task_id = await enqueue(redis_client, payload)
        record = await wait_callback_state(pipeline.store, task_id, "delivered")
    assert record.status == "succeeded"
    log = tinyproxy.log()
    assert f"POST {stub_llm.url}/chat/completions" in log
    assert f"CONNECT 127.0.0.1:{callback_receiver.port}" in log


async def test_no_proxy_sends_provider_calls_direct(
    pipeline_env: PipelineEnv,
    redis_client: aioredis.Redis,
    stub_llm: StubLLMProcess,
    tinyproxy: TinyProxy,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTP_PROXY", tinyproxy.url)
    monkeypatch.setenv("NO_PROXY", "127.0.0.0/8")
    proxied_before = tinyproxy.log().count(f"POST {stub_llm.url}/")
    async with running_worker(pipeline_env.settings, redis_client) as pipeline:
        assert pipeline.llm.proxy is None
        task_id = await enqueue(redis_client, chat_payload(f"direct {uuid.uuid4().hex}"))
        record = await wait_final(pipeline.store, task_id)
    assert record.status == "succeeded"
    assert tinyproxy.log().count(f"POST {stub_llm.url}/") == proxied_before
